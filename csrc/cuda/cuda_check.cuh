// Checked CUDA and cuBLAS calls: every runtime call is wrapped, every launch followed by a check; failures
// throw pyhessk::cuda::CudaError. PYHESSK_CUDA_SYNC_CHECK=1 (read once) synchronises after each launch so an
// asynchronous fault is reported at the kernel that caused it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <sstream>

#include "launch_cuda.h"

namespace pyhessk {
namespace cuda {

inline bool sync_checks() {
  static const bool on = [] {
    const char* v = std::getenv("PYHESSK_CUDA_SYNC_CHECK");
    return v && v[0] == '1';
  }();
  return on;
}

[[noreturn]] inline void throw_cuda(const char* what, const char* err, const char* file, int line) {
  std::ostringstream os;
  os << "pyhessk CUDA error: " << what << " failed: " << err << " (" << file << ":" << line << ")";
  throw CudaError(os.str());
}

}  // namespace cuda
}  // namespace pyhessk

#define PYHESSK_CUDA_CHECK(expr)                                                                 \
  do {                                                                                           \
    const cudaError_t pyhessk_err_ = (expr);                                                     \
    if (pyhessk_err_ != cudaSuccess)                                                             \
      ::pyhessk::cuda::throw_cuda(#expr, cudaGetErrorString(pyhessk_err_), __FILE__, __LINE__); \
  } while (0)

#define PYHESSK_CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                               \
    const cublasStatus_t pyhessk_st_ = (expr);                                                       \
    if (pyhessk_st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::pyhessk::cuda::throw_cuda(#expr, cublasGetStatusString(pyhessk_st_), __FILE__, __LINE__);   \
  } while (0)

#define PYHESSK_KERNEL_LAUNCH_CHECK(stream)                                \
  do {                                                                     \
    PYHESSK_CUDA_CHECK(cudaGetLastError());                                \
    if (::pyhessk::cuda::sync_checks()) PYHESSK_CUDA_CHECK(cudaStreamSynchronize(stream)); \
  } while (0)
