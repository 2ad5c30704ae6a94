// Launch conventions of every pyhessk CUDA kernel, shared by nvcc (pyhessk._core_cuda) and NVRTC (the CuPy
// path). Kernels are thin: a __global__ wrapper runs a grid-stride loop (or one block per item) over a
// PYHESSK_HD step function, and the step functions hold all index arithmetic, so the host compiler can
// run them too (csrc/cuda/emulation, tested on machines without a GPU).
#pragma once
#include "../../common/config.h"

namespace pyhessk {
namespace cuda {

using index_t = long long;  // element counts and offsets (n·k·n_l exceeds 2^31 on large batches)

constexpr int kThreads = 256;        // threads per block of the elementwise kernels
constexpr int kReduceThreads = 256;  // threads per block of the per-entry reductions (a power of two)
constexpr index_t kMaxBlocks = 65535 * 8;  // grid cap; the grid-stride loops cover any remainder
constexpr int kSumCols = 32;         // columns per block of the column sums (a warp reads one row's 32)
constexpr int kSumRows = 256;        // rows per block of the column sums' first pass

}  // namespace cuda
}  // namespace pyhessk

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PYHESSK_GLOBAL __global__
// for (index_t i = first index of this thread; i < total; i += threads in the grid)
#define PYHESSK_GRID_STRIDE(i, total)                                                               \
  for (::pyhessk::cuda::index_t i = ::pyhessk::cuda::index_t(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (total); i += ::pyhessk::cuda::index_t(blockDim.x) * gridDim.x)

namespace pyhessk {
namespace cuda {

// Sum of v over the block (blockDim.x == kReduceThreads); the result is valid in thread 0.
__device__ inline double block_sum(double v) {
  __shared__ double buf[kReduceThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride) buf[threadIdx.x] += buf[threadIdx.x + stride];
    __syncthreads();
  }
  return buf[0];
}

}  // namespace cuda
}  // namespace pyhessk
#endif
