// Launch helpers for the handwritten kernels: grid size for a grid-stride loop, and an NVTX-free default.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace ctdet::cuda {

constexpr int kBlock = 256;

// Blocks for a grid-stride loop over n elements (capped; the loop covers the rest).
inline int grid_for(int64_t n, int block = kBlock) {
  int64_t g = (n + block - 1) / block;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g, 65535 * 8)));
}

}  // namespace ctdet::cuda

#define CTDET_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)
