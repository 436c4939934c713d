// Device kinds and the question "is there a CUDA device?", answerable in every build.
#pragma once
#include <string>

namespace ctdet {

enum class Device { CPU, CUDA };

inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

struct CudaContext;  // nn/cuda_context.h; complete only in CUDA builds

// True when this build has CUDA and a device is present. Never throws.
bool cuda_built();
bool cuda_device_available();
// A short human-readable reason when cuda_device_available() is false ("built without CUDA", ...).
std::string cuda_unavailable_reason();

// CPU threads for the whole process: OpenBLAS's GEMM threads (openblas_set_num_threads) and the other CPU kernels'
// (kernels/cpu/parallel.h, through CTDET_NUM_THREADS). n must be >= 1; throws ctdet::Error otherwise. `ctdet --threads
// N` calls it; without it OpenBLAS follows OPENBLAS_NUM_THREADS and the kernels CTDET_NUM_THREADS / OMP_NUM_THREADS,
// else all cores.
void set_cpu_threads(int n);

}  // namespace ctdet
