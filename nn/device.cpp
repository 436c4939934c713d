#include "nn/device.h"

#include <cblas.h>

#include <cstdlib>
#include <string>

#include "nn/error.h"

#if CTDET_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace ctdet {

bool cuda_built() { return CTDET_WITH_CUDA != 0; }

bool cuda_device_available() {
#if CTDET_WITH_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return n > 0;
#else
  return false;
#endif
}

std::string cuda_unavailable_reason() {
#if CTDET_WITH_CUDA
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
  }
  return n > 0 ? "a device is available" : "no CUDA device present";
#else
  return "ctdet was built without CUDA (-DCTDET_CUDA=OFF or no nvcc)";
#endif
}

void set_cpu_threads(int n) {
  CTDET_CHECK(n >= 1, "CPU threads must be >= 1, got ", n);
  openblas_set_num_threads(n);
  CTDET_CHECK(setenv("CTDET_NUM_THREADS", std::to_string(n).c_str(), 1) == 0, "cannot set CTDET_NUM_THREADS");
}

}  // namespace ctdet
