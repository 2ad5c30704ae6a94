// The single place CPU GEMMs go. The Python side installs function pointers at import, so there is no
// link-time dependency: preferably the BLAS NumPy itself calls (NumPy's wheels bundle an ILP64 OpenBLAS),
// else SciPy's, through scipy.linalg.cython_blas. Sharing NumPy's BLAS matters: NumPy and SciPy each
// bundle their own OpenBLAS, and two thread pools spinning on the same cores cost a scheduler tick (4 ms)
// whenever pyhessk's GEMMs follow NumPy's (measured on 2 cores).
#pragma once
#include <cstdint>

#include "common/check.h"

namespace pyhessk::cpu {

using sgemm_fn = void(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*, float*, float*, int*);
using dgemm_fn = void(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*, double*, double*,
                      int*);

using sgemm64_fn = void(char*, char*, int64_t*, int64_t*, int64_t*, float*, float*, int64_t*, float*, int64_t*,
                        float*, float*, int64_t*);
using dgemm64_fn = void(char*, char*, int64_t*, int64_t*, int64_t*, double*, double*, int64_t*, double*, int64_t*,
                        double*, double*, int64_t*);

struct BlasTable {
  sgemm_fn* sgemm = nullptr;      // LP64 interface (32-bit integers)
  dgemm_fn* dgemm = nullptr;
  sgemm64_fn* sgemm64 = nullptr;  // ILP64 interface (64-bit integers); used when set
  dgemm64_fn* dgemm64 = nullptr;
};

// Set once when the module is imported, read-only afterwards.
BlasTable& blas_table();

// Row-major C (M × N) = alpha · op(A) (M × K) · op(B) (K × N) + beta · C, with leading dimensions of the
// row-major arrays. BLAS is column-major, so it computes Cᵀ = op(B)ᵀ op(A)ᵀ.
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc);

}  // namespace pyhessk::cpu
