// CTDET_HD marks math shared by the CPU reference and the CUDA kernels (DESIGN.md, Principle 2).
#pragma once
#if defined(__CUDACC__)
#define CTDET_HD __host__ __device__ __forceinline__
#else
#define CTDET_HD inline
#endif
