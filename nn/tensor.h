// DType, Shape and Tensor: a Tensor is a non-owning view (data pointer, shape, dtype, device).
// Memory is owned by ParamStore (parameters, gradients, optimizer state), the planned Arena
// (activations, activation gradients, workspaces) or host buffers (I/O, tests). DESIGN.md, Core types.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "nn/device.h"
#include "nn/error.h"

namespace ctdet {

enum class DType { F32, F64, I32, U8 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::U8: return 1;
  }
  return 0;
}
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
  }
  return "?";
}
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }

struct Shape {
  std::vector<int64_t> dims;
  Shape() = default;
  Shape(std::initializer_list<int64_t> d) : dims(d) {}
  explicit Shape(std::vector<int64_t> d) : dims(std::move(d)) {}
  int rank() const { return int(dims.size()); }
  int64_t operator[](int i) const { return dims[size_t(i)]; }
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : dims) n *= d;
    return n;
  }
  bool operator==(const Shape& o) const { return dims == o.dims; }
  bool operator!=(const Shape& o) const { return dims != o.dims; }
  std::string str() const {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + ")";
  }
};

struct Tensor {
  void* data = nullptr;
  Shape shape;
  DType dtype = DType::F32;
  Device device = Device::CPU;

  int64_t numel() const { return shape.numel(); }
  size_t bytes() const { return size_t(numel()) * dtype_size(dtype); }
  template <typename T> T* ptr() const {
    CTDET_CHECK(dtype == dtype_of<T>(), "tensor dtype is ", dtype_name(dtype), ", accessed as ",
                dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }
};

}  // namespace ctdet
