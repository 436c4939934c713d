#include "io/batch.h"

#include <cstdlib>

#include "nn/device.h"
#include "nn/error.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace ctdet {

// ---- host buffers ----------------------------------------------------------------------------------
HostBuffer::HostBuffer(size_t floats) : n_(floats) {
  if (floats == 0) return;
  const size_t bytes = floats * sizeof(float);
#if CTDET_WITH_CUDA
  if (cuda_device_available()) {
    void* p = nullptr;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess) {
      p_ = static_cast<float*>(p);
      pinned_ = true;
      return;
    }
    (void)cudaGetLastError();  // fall back to pageable memory
  }
#endif
  const size_t rounded = (bytes + 63) / 64 * 64;
  p_ = static_cast<float*>(std::aligned_alloc(64, rounded));
  CTDET_CHECK(p_ != nullptr, "HostBuffer: cannot allocate ", bytes, " bytes");
}

HostBuffer::~HostBuffer() {
  if (!p_) return;
#if CTDET_WITH_CUDA
  if (pinned_) {
    cudaFreeHost(p_);
    return;
  }
#endif
  std::free(p_);
}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    this->~HostBuffer();
    p_ = o.p_;
    n_ = o.n_;
    pinned_ = o.pinned_;
    o.p_ = nullptr;
    o.n_ = 0;
    o.pinned_ = false;
  }
  return *this;
}

}  // namespace ctdet
