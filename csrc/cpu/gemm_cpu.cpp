#include "cpu/gemm_cpu.h"

namespace pyhessk::cpu {

BlasTable& blas_table() {
  static BlasTable table;
  return table;
}

namespace {

// Column-major BLAS computes Cᵀ = op(B)ᵀ op(A)ᵀ, so the operands and transposes swap.
template <typename T, typename Fn32, typename Fn64>
void call_gemm(Fn32* f32, Fn64* f64, bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
               const T* B, int ldb, T beta, T* C, int ldc) {
  char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  if (f64) {
    int64_t m = N, n = M, k = K, la = ldb, lb = lda, lc = ldc;
    f64(&ta, &tb, &m, &n, &k, &alpha, const_cast<T*>(B), &la, const_cast<T*>(A), &lb, &beta, C, &lc);
  } else {
    PYHESSK_ASSERT(f32 != nullptr);
    f32(&ta, &tb, &N, &M, &K, &alpha, const_cast<T*>(B), &ldb, const_cast<T*>(A), &lda, &beta, C, &ldc);
  }
}

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  call_gemm(blas_table().sgemm, blas_table().sgemm64, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  call_gemm(blas_table().dgemm, blas_table().dgemm64, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace pyhessk::cpu
