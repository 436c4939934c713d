// CRC-32C (Castagnoli), as TFRecord framing and the checkpoint sidecars use it. Its own file so that programs that
// only read checkpoints (inference, the C API) do not link the TFRecord / protobuf code.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ctdet {

// CRC-32C of n bytes, continuing from a previous crc (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
inline uint32_t crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t crc32c_unmask(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace ctdet
