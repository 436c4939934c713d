// ParamStore: the named parameters, their gradients and the optimizer state, one block each.
// Gradients accumulate across micro-batches; zero_grads() clears them (the optimizer calls it).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/graph.h"
#include "nn/memory.h"

namespace ctdet {

class ParamStore {
 public:
  explicit ParamStore(Device device = Device::CPU, DType dtype = DType::F32) : device_(device), dtype_(dtype) {}

  void declare(const std::string& name, const Shape& shape);  // before allocate(); re-declaring must agree
  void declare_from(const Graph& g);                           // every parameter of the graph
  void allocate();                                             // zero-filled
  bool allocated() const { return allocated_; }

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  Tensor param(const std::string& name) const { return view(name, params_); }
  Tensor grad(const std::string& name) const { return view(name, grads_); }
  Tensor momentum(const std::string& name) const { return view(name, momentum_); }
  const std::vector<std::string>& names() const { return names_; }
  Shape shape(const std::string& name) const { return entries_.at(at(name)).shape; }

  int64_t numel() const { return total_numel_; }
  size_t bytes() const { return size_t(total_numel_) * dtype_size(dtype_); }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

  void zero_grads() { grads_.zero(); }
  // Whole-block access (optimizer, clipping, checkpoints).
  Tensor all_params() const { return block(params_); }
  Tensor all_grads() const { return block(grads_); }
  Tensor all_momentum() const { return block(momentum_); }

  // Host copies in double or float, whatever the store's dtype.
  template <typename T> std::vector<T> get(const std::string& name, int which = 0) const;  // 0 param 1 grad 2 mom
  template <typename T> void set(const std::string& name, const std::vector<T>& v, int which = 0);

 private:
  struct Entry {
    Shape shape;
    int64_t offset = 0;  // elements
  };
  size_t at(const std::string& name) const;
  Tensor view(const std::string& name, const DeviceBuffer& b) const;
  Tensor block(const DeviceBuffer& b) const;

  Device device_;
  DType dtype_;
  bool allocated_ = false;
  std::vector<std::string> names_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
  int64_t total_numel_ = 0;
  DeviceBuffer params_, grads_, momentum_;
};

}  // namespace ctdet
