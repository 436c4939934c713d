// CudaContext: the stream and the cuBLAS / cuDNN handles, passed explicitly to every CUDA op.
// Never global (DESIGN.md, Core types). Only usable in builds with CTDET_WITH_CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

#include "nn/device.h"

#if CTDET_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

namespace ctdet {

struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  // Workspace handed out by the memory plan for the node being run (conv algorithms, cuBLAS).
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Upper bound on the cuDNN workspace any conv may pick (the planner's cap).
  size_t workspace_cap = size_t(256) << 20;
  bool deterministic = false;
  // Pointwise (1x1, stride 1) convolutions through cuBLAS GEMMs (kernels/conv2d.h) rather than cuDNN; bench_ops
  // switches it off to time both.
  bool pointwise_conv_gemm = true;
  // cuDNN algorithms by measured time (cudnnFind*, once per shape) instead of the heuristics' ranking. Off by default
  // until a GPU run shows it pays (bench_ops "[timed]" rows, bench_model --conv-algos timed).
  bool conv_algo_timed = false;
  // Algorithm choices keyed by a shape string (cuDNN conv algorithms chosen once per shape).
  std::unordered_map<std::string, int64_t> algo_cache;

  explicit CudaContext(int device = 0);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  void synchronize() const;
};

}  // namespace ctdet
#endif
