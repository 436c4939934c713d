// DeviceBuffer: one owned block of host or device memory (the planned Arena and ParamStore blocks use it).
#pragma once
#include <cstddef>

#include "nn/device.h"

namespace ctdet {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device d, size_t bytes) { allocate(d, bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = static_cast<DeviceBuffer&&>(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  // Throws ctdet::Error with the size and what the device had free when the allocation fails.
  void allocate(Device d, size_t bytes);
  void release();
  void zero();
  void fill_bytes(size_t offset, size_t bytes, unsigned char v);

  void* data() const { return ptr_; }
  size_t size() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
};

// Copies between host and a buffer on `d` (synchronous).
void copy_to_device(Device d, void* dst, const void* host_src, size_t bytes);
// Free and total bytes of the current CUDA device (cudaMemGetInfo); false without CUDA or without a device.
bool device_memory_info(size_t* free_bytes, size_t* total_bytes);
void copy_to_host(Device d, void* host_dst, const void* src, size_t bytes);

}  // namespace ctdet
