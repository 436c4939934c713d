#include "kernels/common/cuda_check.cuh"
#include "nn/cuda_context.h"

namespace ctdet {

CudaContext::CudaContext(int dev) : device(dev) {
  CTDET_CUDA_CHECK(cudaSetDevice(device));
  CTDET_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CTDET_CUBLAS_CHECK(cublasCreate(&cublas));
  CTDET_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  // fp32 throughout: no TF32 unless a benchmark flag asks for it (DESIGN.md, Numerics).
  CTDET_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));
  CTDET_CUDNN_CHECK(cudnnCreate(&cudnn));
  CTDET_CUDNN_CHECK(cudnnSetStream(cudnn, stream));
}

CudaContext::~CudaContext() {
  if (cudnn) cudnnDestroy(cudnn);
  if (cublas) cublasDestroy(cublas);
  if (stream) cudaStreamDestroy(stream);
}

void CudaContext::synchronize() const { CTDET_CUDA_CHECK(cudaStreamSynchronize(stream)); }

}  // namespace ctdet
