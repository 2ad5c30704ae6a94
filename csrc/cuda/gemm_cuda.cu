// The GEMMs of pyhessk._core_cuda: cuBLAS on the caller's stream, one handle per device (created on first
// use, guarded by a mutex since a handle's stream and workspace are per-call state). Row-major operands
// map to column-major cuBLAS as Cᵀ = op(B)ᵀ op(A)ᵀ, as the CPU engine does. TF32 only when asked for.
#include <map>
#include <mutex>
#include <string>

#include "cuda_check.cuh"

namespace pyhessk {
namespace cuda {
namespace {

std::mutex& handle_mutex() {
  static std::mutex m;
  return m;
}

cublasHandle_t handle_for(int device) {  // caller holds handle_mutex()
  static std::map<int, cublasHandle_t> handles;  // released with the process (cuBLAS may be gone at exit)
  auto it = handles.find(device);
  if (it != handles.end()) return it->second;
  cublasHandle_t h = nullptr;
  PYHESSK_CUBLAS_CHECK(cublasCreate(&h));
  handles[device] = h;
  return h;
}

}  // namespace

void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const void* A, int lda, const void* B, int ldb,
          double beta, void* C, int ldc, int dtype, void* stream, bool allow_tf32, int batch, long long sA,
          long long sB, long long sC) {
  if (M < 0 || N < 0 || K < 0 || batch < 0) throw std::invalid_argument("gemm: negative size or batch");
  if (M == 0 || N == 0 || batch == 0) return;
  const int device = current_device();
  std::lock_guard<std::mutex> lock(handle_mutex());
  cublasHandle_t h = handle_for(device);
  PYHESSK_CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(stream)));
  PYHESSK_CUBLAS_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
  const cublasOperation_t opA = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float af = float(alpha), bf = float(beta);
  const void* a = dtype == 0 ? static_cast<const void*>(&af) : static_cast<const void*>(&alpha);
  const void* b = dtype == 0 ? static_cast<const void*>(&bf) : static_cast<const void*>(&beta);
  const cudaDataType_t type = dtype == 0 ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute = dtype != 0 ? CUBLAS_COMPUTE_64F
                                      : allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  if (batch == 1) {
    PYHESSK_CUBLAS_CHECK(cublasGemmEx(h, opB, opA, N, M, K, a, B, type, ldb, A, type, lda, b, C, type, ldc, compute,
                                      CUBLAS_GEMM_DEFAULT));
  } else {
    PYHESSK_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opB, opA, N, M, K, a, B, type, ldb, sB, A, type, lda, sA, b,
                                                    C, type, ldc, sC, batch, compute, CUBLAS_GEMM_DEFAULT));
  }
}

std::vector<std::pair<std::string, std::string>> build_info() {
  std::vector<std::pair<std::string, std::string>> info;
  info.emplace_back("cuda_runtime_built", std::to_string(CUDART_VERSION));
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) info.emplace_back("cuda_runtime", std::to_string(rt));
  if (cudaDriverGetVersion(&drv) == cudaSuccess) info.emplace_back("cuda_driver", std::to_string(drv));
  info.emplace_back("cublas_built", std::to_string(CUBLAS_VERSION));
#ifdef PYHESSK_CUDA_ARCHS
  info.emplace_back("archs", PYHESSK_CUDA_ARCHS);
#endif
#ifdef PYHESSK_VERSION
  info.emplace_back("version", PYHESSK_VERSION);
#endif
  return info;
}

}  // namespace cuda
}  // namespace pyhessk
