#include "nn/memory.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "nn/error.h"
#include "nn/planner.h"
#if CTDET_WITH_CUDA
#include "kernels/common/cuda_check.cuh"
#endif

namespace ctdet {

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    release();
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    device_ = o.device_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::allocate(Device d, size_t bytes) {
  release();
  device_ = d;
  bytes_ = bytes;
  if (bytes == 0) return;
  if (d == Device::CPU) {
    ptr_ = std::aligned_alloc(256, align_up(bytes, 256));
    CTDET_CHECK(ptr_ != nullptr, "out of host memory allocating ", format_bytes(bytes));
    return;
  }
#if CTDET_WITH_CUDA
  cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    ptr_ = nullptr;
    bytes_ = 0;
    CTDET_FAIL("out of GPU memory allocating ", format_bytes(bytes), " (device has ", format_bytes(free_b),
               " free of ", format_bytes(total_b), "): ", cudaGetErrorString(e));
  }
#else
  CTDET_FAIL("CUDA memory requested but ctdet was built without CUDA");
#endif
}

bool device_memory_info(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = *total_bytes = 0;
#if CTDET_WITH_CUDA
  if (cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess) return true;
  cudaGetLastError();
#endif
  return false;
}

void DeviceBuffer::release() {
  if (!ptr_) return;
  if (device_ == Device::CPU) std::free(ptr_);
#if CTDET_WITH_CUDA
  else cudaFree(ptr_);
#endif
  ptr_ = nullptr;
  bytes_ = 0;
}

void DeviceBuffer::zero() { fill_bytes(0, bytes_, 0); }

void DeviceBuffer::fill_bytes(size_t offset, size_t bytes, unsigned char v) {
  if (!bytes) return;
  CTDET_CHECK(offset + bytes <= bytes_, "buffer fill out of range");
  if (device_ == Device::CPU) {
    std::memset(static_cast<char*>(ptr_) + offset, v, bytes);
    return;
  }
#if CTDET_WITH_CUDA
  // The work streams are non-blocking (CudaContext): they do not wait for the legacy default stream, and
  // cudaMemset may return before it is done. Synchronise the device on both sides.
  CTDET_CUDA_CHECK(cudaDeviceSynchronize());
  CTDET_CUDA_CHECK(cudaMemset(static_cast<char*>(ptr_) + offset, v, bytes));
  CTDET_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

void copy_to_device(Device d, void* dst, const void* src, size_t bytes) {
  if (d == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if CTDET_WITH_CUDA
  // Kernels on a non-blocking stream may still read dst: a plain cudaMemcpy (legacy default stream) does
  // not wait for them. Found on an H200 under compute-sanitizer (slower kernels): results read before ready.
  CTDET_CUDA_CHECK(cudaDeviceSynchronize());
  CTDET_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  CTDET_CUDA_CHECK(cudaDeviceSynchronize());  // a pageable copy may return before its DMA completes
#else
  CTDET_FAIL("CUDA copy requested but ctdet was built without CUDA");
#endif
}

void copy_to_host(Device d, void* dst, const void* src, size_t bytes) {
  if (d == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if CTDET_WITH_CUDA
  // Wait for the work streams (non-blocking, so cudaMemcpy alone would not) before reading results.
  CTDET_CUDA_CHECK(cudaDeviceSynchronize());
  CTDET_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
#else
  CTDET_FAIL("CUDA copy requested but ctdet was built without CUDA");
#endif
}

}  // namespace ctdet
