// The single place CPU GEMMs go: SciPy's BLAS, reached through the function pointers that
// scipy.linalg.cython_blas exports (one BLAS in the process, no link-time dependency).
#pragma once
#include "common/check.h"

namespace pyhessk::cpu {

using sgemm_fn = void(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*, int*);
using dgemm_fn = void(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*, double*, double*,
                      int*);

struct BlasTable {
  sgemm_fn* sgemm = nullptr;
  dgemm_fn* dgemm = nullptr;
};

// Set once when the module is imported, read-only afterwards.
BlasTable& blas_table();

// Row-major C (M × N) = alpha · op(A) (M × K) · op(B) (K × N) + beta · C, with leading dimensions of the
// row-major arrays. BLAS is column-major, so it computes Cᵀ = op(B)ᵀ op(A)ᵀ.
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc);

}  // namespace pyhessk::cpu
