// NumPy .npy files (format 1.0/2.0, little-endian, C order): the exchange format of `ctdet forward`
// and of the golden test fixtures.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ctdet {

struct NpyArray {
  std::string dtype;            // numpy descr without byte order: "f4", "f8", "i4", "i8", "u1"
  std::vector<int64_t> shape;   // empty for a scalar
  std::vector<uint8_t> bytes;   // raw little-endian data, C order

  int64_t numel() const;
  size_t itemsize() const;
  // Element values converted to T (any supported dtype).
  template <typename T> std::vector<T> as() const;
};

// Throws ctdet::Error naming the file on a missing file, bad magic, Fortran order, big-endian data,
// unsupported dtype or truncated data.
NpyArray read_npy(const std::string& path);
// Written atomically (temporary name, then rename).
void write_npy(const std::string& path, const NpyArray& a);
NpyArray make_npy_f32(const std::vector<int64_t>& shape, const float* data);

}  // namespace ctdet
