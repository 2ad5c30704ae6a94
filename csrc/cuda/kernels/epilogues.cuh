// The elementwise steps of the forward, gradient and R-passes (ALGORITHMS.md §10): each runs after one
// GEMM and fuses everything that GEMM's output needs before the next. Layouts are row-major and
// batch-major: per-sample arrays are (n, m); R-quantities of a block of k directions are (n, k, m); a block
// of k parameter vectors V is (N, k) in θ's layout. Every step takes the flat index i of the element it
// writes; the kernels below run it over a grid-stride loop.
#pragma once
#include "../../common/activations.h"
#include "launch.cuh"

namespace pyhessk {
namespace cuda {

// Z (n, m) ← φ(Z + b) with d1 ← φ′ and d2 ← φ″ (b, d1, d2 may be null; d2 is null where φ″ ≡ 0).
template <typename T, int kAct>
PYHESSK_HD inline void activation_step(index_t i, index_t m, const T* b, T* Z, T* d1, T* d2) {
  T a, x1, x2;
  ActOps<static_cast<Act>(kAct)>::eval(Z[i] + (b ? b[i % m] : T(0)), a, x1, x2);
  Z[i] = a;
  if (d1) d1[i] = x1;
  if (d2) d2[i] = x2;
}

// Z (n, m) ← φ(Z + b), no derivatives (the plain forward pass).
template <typename T, int kAct>
PYHESSK_HD inline void activation_value_step(index_t i, index_t m, const T* b, T* Z) {
  Z[i] = ActOps<static_cast<Act>(kAct)>::f(Z[i] + (b ? b[i % m] : T(0)));
}

// Z (n, m) += b (m,): the linear output layer's bias.
template <typename T>
PYHESSK_HD inline void add_bias_step(index_t i, index_t m, const T* b, T* Z) {
  Z[i] += b[i % m];
}

// R-forward epilogue on RZ (n, k, m): RZ += the bias directions V[b_off + r, j] (V may be null), then
// RA = φ′ ⊙ RZ for hidden layers (RA may be null; d1 is φ′ (n, m)).
template <typename T>
PYHESSK_HD inline void rforward_step(index_t i, index_t k, index_t m, const T* V, index_t b_off, const T* d1, T* RZ,
                                     T* RA) {
  const index_t r = i % m, j = (i / m) % k, s = i / (m * k);
  const T z = RZ[i] + (V ? V[(b_off + r) * k + j] : T(0));
  RZ[i] = z;
  if (RA) RA[i] = d1[s * m + r] * z;
}

// R-backward epilogue in place of R{Γ} (n, k, m): R{Δ} = φ′ ⊙ R{Γ} + φ″ ⊙ Γ ⊙ R{Z} (d2 null where φ″ ≡ 0);
// d1, d2, G are (n, m), RZ is (n, k, m).
template <typename T>
PYHESSK_HD inline void rbackward_step(index_t i, index_t k, index_t m, const T* d1, const T* d2, const T* G,
                                      const T* RZ, T* RG) {
  const index_t q = (i / (m * k)) * m + i % m;
  RG[i] = d1[q] * RG[i] + (d2 ? d2[q] * G[q] * RZ[i] : T(0));
}

// X (n, k, m) ⊙= φ′ (n, m), broadcast over the k directions (the Gauss–Newton backward).
template <typename T>
PYHESSK_HD inline void scale_rows_step(index_t i, index_t k, index_t m, const T* d1, T* X) {
  X[i] *= d1[(i / (m * k)) * m + i % m];
}

// out = x ⊙ y (Δ_{l−1} = φ′ ⊙ Γ_{l−1}); out may alias x or y.
template <typename T>
PYHESSK_HD inline void hadamard_step(index_t i, const T* x, const T* y, T* out) {
  out[i] = x[i] * y[i];
}

// y += alpha · x (the λ W term of the gradient).
template <typename T>
PYHESSK_HD inline void axpy_step(index_t i, T alpha, const T* x, T* y) {
  y[i] += alpha * x[i];
}

// y += c.
template <typename T>
PYHESSK_HD inline void add_scalar_step(index_t i, T c, T* y) {
  y[i] += c;
}

// out = x ⊙ x.
template <typename T>
PYHESSK_HD inline void square_step(index_t i, const T* x, T* out) {
  out[i] = x[i] * x[i];
}

// The weight directions of layer l as k stacked matrices: buf (k, n_l·n_{l−1}) with buf[j, e] = V[w0 + e, j]
// (i runs over k·nl, nl = n_l·n_{l−1}); row e = r·n_{l−1} + c is W_l[r, c].
template <typename T>
PYHESSK_HD inline void pack_rows_step(index_t i, const T* V, index_t w0, index_t k, index_t nl, T* buf) {
  buf[i] = V[(w0 + i % nl) * k + i / nl];
}

// The same directions interleaved: buf (n_l, k, n_{l−1}) with buf[r, j, c] = V[w0 + r·n_{l−1} + c, j].
template <typename T>
PYHESSK_HD inline void pack_cols_step(index_t i, const T* V, index_t w0, index_t k, index_t n_prev, T* buf) {
  const index_t c = i % n_prev, j = (i / n_prev) % k, r = i / (n_prev * k);
  buf[i] = V[(w0 + r * n_prev + c) * k + j];
}

// The weight block of layer l in out (N, k) (i runs over nl·k, so writes are contiguous):
//   out[w0 + e, j] = hw[j, e] + t2[r, j, c] + λ V[w0 + e, j],  e = r·n_{l−1} + c,
// with hw (k, nl) = Dᵀ A_{l−1} per direction, t2 (n_l, k, n_{l−1}) = Δ_lᵀ R{A_{l−1}} (null in Gauss–Newton and
// first-layer sweeps) and V null unless λ ≠ 0.
template <typename T>
PYHESSK_HD inline void assemble_step(index_t i, index_t k, index_t nl, index_t n_prev, const T* hw, const T* t2,
                                     const T* V, T lam, index_t w0, T* out) {
  const index_t e = i / k, j = i % k;
  T v = hw[j * nl + e];
  if (t2) v += t2[((e / n_prev) * k + j) * n_prev + e % n_prev];
  if (V) v += lam * V[(w0 + e) * k + j];
  out[(w0 + e) * k + j] = v;
}

// ---- sums over samples, in double ----------------------------------------------------------------------
// The bias sums Σ_s D[s, c] over the batch accumulate in double whatever T: a float running sum of n terms
// loses up to n·ε/2 (5.7e-5 measured on a bias entry of G at n = 2·10⁵ with float GEMMs against ones).
// Column c = j·n_l + r of D (n, k, n_l) (direction j, unit r) goes to row r, column j of the (n_l, k) bias
// block of a block of k parameter vectors.
PYHESSK_HD inline index_t column_sum_out(index_t c, index_t k, index_t n_l) { return (c % n_l) * k + c / n_l; }

// The block of a column sum over X (n, m): item = tile + chunk·tiles covers columns [c0, c1) (kSumCols of
// them, fewer in the last tile) and rows [r0, r1) of chunk (rows_per_chunk of them, fewer in the last one).
struct SumBlock {
  index_t c0, c1, r0, r1, chunk;
};
PYHESSK_HD inline SumBlock sum_block(index_t item, index_t n, index_t m, index_t rows_per_chunk) {
  const index_t tiles = (m + kSumCols - 1) / kSumCols;
  const index_t tile = item % tiles, chunk = item / tiles;
  const index_t c0 = tile * kSumCols, r0 = chunk * rows_per_chunk;
  return {c0, c0 + kSumCols < m ? c0 + kSumCols : m, r0, r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n, chunk};
}

}  // namespace cuda
}  // namespace pyhessk

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
namespace pyhessk {
namespace cuda {

template <typename T, int kAct>
PYHESSK_GLOBAL void activation_kernel(index_t total, index_t m, const T* b, T* Z, T* d1, T* d2) {
  PYHESSK_GRID_STRIDE(i, total) activation_step<T, kAct>(i, m, b, Z, d1, d2);
}
template <typename T, int kAct>
PYHESSK_GLOBAL void activation_value_kernel(index_t total, index_t m, const T* b, T* Z) {
  PYHESSK_GRID_STRIDE(i, total) activation_value_step<T, kAct>(i, m, b, Z);
}
template <typename T>
PYHESSK_GLOBAL void add_bias_kernel(index_t total, index_t m, const T* b, T* Z) {
  PYHESSK_GRID_STRIDE(i, total) add_bias_step<T>(i, m, b, Z);
}
template <typename T>
PYHESSK_GLOBAL void rforward_kernel(index_t total, index_t k, index_t m, const T* V, index_t b_off, const T* d1,
                                    T* RZ, T* RA) {
  PYHESSK_GRID_STRIDE(i, total) rforward_step<T>(i, k, m, V, b_off, d1, RZ, RA);
}
template <typename T>
PYHESSK_GLOBAL void rbackward_kernel(index_t total, index_t k, index_t m, const T* d1, const T* d2, const T* G,
                                     const T* RZ, T* RG) {
  PYHESSK_GRID_STRIDE(i, total) rbackward_step<T>(i, k, m, d1, d2, G, RZ, RG);
}
template <typename T>
PYHESSK_GLOBAL void scale_rows_kernel(index_t total, index_t k, index_t m, const T* d1, T* X) {
  PYHESSK_GRID_STRIDE(i, total) scale_rows_step<T>(i, k, m, d1, X);
}
template <typename T>
PYHESSK_GLOBAL void hadamard_kernel(index_t total, const T* x, const T* y, T* out) {
  PYHESSK_GRID_STRIDE(i, total) hadamard_step<T>(i, x, y, out);
}
template <typename T>
PYHESSK_GLOBAL void axpy_kernel(index_t total, T alpha, const T* x, T* y) {
  PYHESSK_GRID_STRIDE(i, total) axpy_step<T>(i, alpha, x, y);
}
template <typename T>
PYHESSK_GLOBAL void add_scalar_kernel(index_t total, T c, T* y) {
  PYHESSK_GRID_STRIDE(i, total) add_scalar_step<T>(i, c, y);
}
template <typename T>
PYHESSK_GLOBAL void square_kernel(index_t total, const T* x, T* out) {
  PYHESSK_GRID_STRIDE(i, total) square_step<T>(i, x, out);
}
template <typename T>
PYHESSK_GLOBAL void pack_rows_kernel(index_t total, const T* V, index_t w0, index_t k, index_t nl, T* buf) {
  PYHESSK_GRID_STRIDE(i, total) pack_rows_step<T>(i, V, w0, k, nl, buf);
}
template <typename T>
PYHESSK_GLOBAL void pack_cols_kernel(index_t total, const T* V, index_t w0, index_t k, index_t n_prev, T* buf) {
  PYHESSK_GRID_STRIDE(i, total) pack_cols_step<T>(i, V, w0, k, n_prev, buf);
}
template <typename T>
PYHESSK_GLOBAL void assemble_kernel(index_t total, index_t k, index_t nl, index_t n_prev, const T* hw, const T* t2,
                                    const T* V, T lam, index_t w0, T* out) {
  PYHESSK_GRID_STRIDE(i, total) assemble_step<T>(i, k, nl, n_prev, hw, t2, V, lam, w0, out);
}

// Σ over rows [r0, r1) of column c of X (·, m), in double, by the block's kReduceThreads / kSumCols row
// lanes (each in a fixed order, then combined in lane order: deterministic); valid in lane 0 (threads below
// kSumCols). Every thread of the block must call it.
template <typename In>
__device__ inline double tile_column_sum(index_t r0, index_t r1, index_t m, const In* X, index_t c) {
  constexpr int kLanes = kReduceThreads / kSumCols;
  __shared__ double buf[kReduceThreads];
  const int col = int(threadIdx.x) % kSumCols, lane = int(threadIdx.x) / kSumCols;
  double part = 0;
  if (c < m)
    for (index_t s = r0 + lane; s < r1; s += kLanes) part += double(X[s * m + c]);
  buf[threadIdx.x] = part;
  __syncthreads();
  double total = 0;
  if (lane == 0)
    for (int q = 0; q < kLanes; ++q) total += buf[q * kSumCols + col];
  return total;
}

// One block per sum_block(item, n, m, kSumRows): partial[chunk, c] = Σ over the block's rows of X[s, c] for
// X (n, m).
template <typename T>
PYHESSK_GLOBAL void column_partials_kernel(index_t n, index_t m, const T* X, double* partial) {
  const SumBlock b = sum_block(blockIdx.x, n, m, kSumRows);
  const index_t c = b.c0 + int(threadIdx.x) % kSumCols;
  const double total = tile_column_sum(b.r0, b.r1, m, X, c);
  if (int(threadIdx.x) < kSumCols && c < b.c1) partial[b.chunk * m + c] = total;
}

// One block per tile, sum_block(tile, chunks, k·n_l, chunks): out[column_sum_out(c, k, n_l)] =
// Σ_chunk partial[chunk, c] for partial (chunks, k·n_l).
template <typename T>
PYHESSK_GLOBAL void column_finish_kernel(index_t chunks, index_t k, index_t n_l, const double* partial, T* out) {
  const index_t m = k * n_l;
  const SumBlock b = sum_block(blockIdx.x, chunks, m, chunks);
  const index_t c = b.c0 + int(threadIdx.x) % kSumCols;
  const double total = tile_column_sum(b.r0, b.r1, m, partial, c);
  if (int(threadIdx.x) < kSumCols && c < b.c1) out[column_sum_out(c, k, n_l)] = T(total);
}

// One block per row t: out[t] = sc Σ_s X[t, s] for X (rows, n), in double.
template <typename T>
PYHESSK_GLOBAL void row_sums_kernel(index_t n, const T* X, T sc, T* out) {
  const index_t t = blockIdx.x;
  double part = 0;
  for (index_t s = threadIdx.x; s < n; s += blockDim.x) part += double(X[t * n + s]);
  const double total = block_sum(part);
  if (threadIdx.x == 0) out[t] = T(double(sc) * total);
}

}  // namespace cuda
}  // namespace pyhessk

#endif
