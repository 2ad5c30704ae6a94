#include "cpu/gemm_cpu.h"

namespace pyhessk::cpu {

BlasTable& blas_table() {
  static BlasTable table;
  return table;
}

template <>
void gemm<float>(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  PYHESSK_ASSERT(blas_table().sgemm != nullptr);
  char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  blas_table().sgemm(&ta, &tb, &N, &M, &K, &alpha, const_cast<float*>(B), &ldb, const_cast<float*>(A), &lda,
                     &beta, C, &ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  PYHESSK_ASSERT(blas_table().dgemm != nullptr);
  char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  blas_table().dgemm(&ta, &tb, &N, &M, &K, &alpha, const_cast<double*>(B), &ldb, const_cast<double*>(A), &lda,
                     &beta, C, &ldc);
}

}  // namespace pyhessk::cpu
