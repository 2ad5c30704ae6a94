// Entrywise Gauss–Newton evaluation on the GPU (SPEC §3). The precomputation keeps, for all layers in one
// flat buffer each (offsets per layer chosen by the host):
//   S  : S_l (n_l, n, d), S_l[i, k, :] = S_{l,k}[:, i]
//   AT : A_{l−1}ᵀ (n_{l−1}, n)
//   nu : ν_l (n_l, n) = ‖S_l[i, k, :]‖
// A parameter p = (l, i, j) is addressed by two offsets the host computes: sb = where S_l[i] starts in S,
// ab = where row j of A_{l−1}ᵀ starts in AT, or −1 for a bias (activation factor 1); nb likewise into nu.
// Then G[p, q] = sc Σ_k a_p[k] a_q[k] ⟨S[sb_p + k·d : +d], S[sb_q + k·d : +d]⟩ (+ λ on the weight diagonal).
#pragma once
#include "../../common/losses.h"
#include "launch.cuh"

namespace pyhessk {
namespace cuda {

template <typename T>
PYHESSK_HD inline T activation_factor(const T* AT, index_t ab, index_t k) {
  return ab < 0 ? T(1) : AT[ab + k];
}

// S_L (d, n, d) from the loss head's data: S_L[i, k, a] = Cᵀ_k[a][i] (idx runs over d·n·d).
template <typename T, int kLoss>
PYHESSK_HD inline void output_factor_step(index_t idx, index_t n, index_t d, const T* aux, T* S) {
  const index_t a = idx % d, k = (idx / d) % n, i = idx / (n * d);
  S[idx] = LossOps<static_cast<Loss>(kLoss)>::factor_entry(aux + k * d, int(d), int(a), int(i));
}

// S_l (n_l, n, d) ⊙= φ′_l (n, n_l) broadcast over d: the D_l in S_l = D_l W_{l+1}ᵀ S_{l+1}.
template <typename T>
PYHESSK_HD inline void scale_sensitivity_step(index_t idx, index_t n, index_t d, index_t n_l, const T* d1, T* S) {
  S[idx] *= d1[((idx / d) % n) * n_l + idx / (n * d)];
}

// nu[ik] = ‖S[ik·d : ik·d + d]‖ over the rows ik of one layer (n_l·n of them).
template <typename T>
PYHESSK_HD inline void column_norm_step(index_t ik, index_t d, const T* S, T* nu) {
  acc_t<T> sq = 0;
  for (index_t a = 0; a < d; ++a) sq += S[ik * d + a] * S[ik * d + a];
  nu[ik] = T(sqrt(sq));
}

// AT (m, n) = A (n, m)ᵀ (idx runs over the output, so writes are contiguous).
template <typename T>
PYHESSK_HD inline void transpose_step(index_t idx, index_t n, index_t m, const T* A, T* AT) {
  AT[idx] = A[(idx % n) * m + idx / n];
}

// The factor x_p (n, d) of parameter t in a list: out[t, k, c] = a_p[k] S[sb[t] + k·d + c] (idx over m·n·d).
template <typename T>
PYHESSK_HD inline void gather_step(index_t idx, index_t nd, index_t d, const T* S, const T* AT, const index_t* sb,
                                   const index_t* ab, T* out) {
  const index_t t = idx / nd, kc = idx % nd;
  out[idx] = activation_factor(AT, ab[t], kc / d) * S[sb[t] + kc];
}

// Sample k's term of an exact entry: a_p[k] a_q[k] ⟨S_p[k], S_q[k]⟩.
template <typename T>
PYHESSK_HD inline acc_t<T> entry_term(index_t k, index_t d, const T* S, const T* AT, index_t sp, index_t ap,
                                      index_t sq, index_t aq) {
  acc_t<T> dot = 0;
  for (index_t c = 0; c < d; ++c) dot += S[sp + k * d + c] * S[sq + k * d + c];
  return activation_factor(AT, ap, k) * activation_factor(AT, aq, k) * dot;
}

// Tl[i, t, k] = ⟨S_l[i, k, :], U[t, k, :]⟩ for Tl (n_l, m, n), U (m, n, d) (idx over n_l·m·n): the columns
// G[:, J] contract every unit's sensitivities with the gathered factors of J.
template <typename T>
PYHESSK_HD inline void contract_step(index_t idx, index_t n, index_t d, index_t m, const T* S_l, const T* U, T* Tl) {
  const index_t k = idx % n, t = (idx / n) % m, i = idx / (n * m);
  acc_t<T> dot = 0;
  for (index_t c = 0; c < d; ++c) dot += S_l[(i * n + k) * d + c] * U[(t * n + k) * d + c];
  Tl[idx] = T(dot);
}

// The weight rows of columns G[:, J]: out[w0 + i·n_{l−1} + c, t] = R[i, t, c] for R (n_l, m, n_{l−1})
// (idx runs over the output block, n_l·n_{l−1}·m).
template <typename T>
PYHESSK_HD inline void scatter_columns_step(index_t idx, index_t m, index_t n_prev, const T* R, index_t w0, T* out) {
  const index_t t = idx % m, e = idx / m, i = e / n_prev, c = e % n_prev;
  out[(w0 + e) * m + t] = R[(i * m + t) * n_prev + c];
}

// ---- the sampled estimator ------------------------------------------------------------------------------
// Entry t draws from its own splitmix64 stream seeded with seed ^ (0xD1B54A32D192ED03·(t + 1)); draw r uses
// the stream's (r + 1)-th state, so draws can run in parallel and still match the CPU engine's sequence.
PYHESSK_HD inline unsigned long long splitmix64_at(unsigned long long state0, unsigned long long r) {
  unsigned long long z = state0 + (r + 1ull) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

PYHESSK_HD inline unsigned long long sample_stream(unsigned long long seed, index_t t) {
  return seed ^ (0xD1B54A32D192ED03ull * (unsigned long long)(t + 1));
}

// π_k ∝ ‖x_k‖‖y_k‖ = |a_p[k] ν_p[k]| |a_q[k] ν_q[k]| (unnormalised, in double).
template <typename T>
PYHESSK_HD inline double sample_weight(index_t k, const T* AT, const T* nu, index_t ap, index_t np, index_t aq,
                                       index_t nq) {
  return fabs(double(activation_factor(AT, ap, k)) * double(nu[np + k])) *
         fabs(double(activation_factor(AT, aq, k)) * double(nu[nq + k]));
}

// The index of the first cdf entry above u (cdf nondecreasing, n entries), clamped to n − 1.
PYHESSK_HD inline index_t upper_bound_index(const double* cdf, index_t n, double u) {
  index_t lo = 0, hi = n;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (cdf[mid] <= u) lo = mid + 1; else hi = mid;
  }
  return lo < n ? lo : n - 1;
}

// Draw r of one entry: x_k / π_k for the sampled k (cdf holds the running sums of sample_weight, total last).
template <typename T>
PYHESSK_HD inline double sample_draw(unsigned long long state0, index_t r, const double* cdf, index_t n, index_t d,
                                     const T* S, const T* AT, index_t sp, index_t ap, index_t sq, index_t aq) {
  const double total = cdf[n - 1];
  const double u = double(splitmix64_at(state0, (unsigned long long)r) >> 11) * 0x1.0p-53 * total;
  const index_t k = upper_bound_index(cdf, n, u);
  const double pk = (cdf[k] - (k ? cdf[k - 1] : 0.0)) / total;
  if (!(pk > 0)) return 0.0;
  double dot = 0;
  for (index_t c = 0; c < d; ++c) dot += double(S[sp + k * d + c]) * double(S[sq + k * d + c]);
  return double(activation_factor(AT, ap, k)) * double(activation_factor(AT, aq, k)) * dot / pk;
}

}  // namespace cuda
}  // namespace pyhessk

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
namespace pyhessk {
namespace cuda {

template <typename T, int kLoss>
PYHESSK_GLOBAL void output_factor_kernel(index_t total, index_t n, index_t d, const T* aux, T* S) {
  PYHESSK_GRID_STRIDE(i, total) output_factor_step<T, kLoss>(i, n, d, aux, S);
}
template <typename T>
PYHESSK_GLOBAL void scale_sensitivity_kernel(index_t total, index_t n, index_t d, index_t n_l, const T* d1, T* S) {
  PYHESSK_GRID_STRIDE(i, total) scale_sensitivity_step<T>(i, n, d, n_l, d1, S);
}
template <typename T>
PYHESSK_GLOBAL void column_norm_kernel(index_t total, index_t d, const T* S, T* nu) {
  PYHESSK_GRID_STRIDE(i, total) column_norm_step<T>(i, d, S, nu);
}
template <typename T>
PYHESSK_GLOBAL void transpose_kernel(index_t total, index_t n, index_t m, const T* A, T* AT) {
  PYHESSK_GRID_STRIDE(i, total) transpose_step<T>(i, n, m, A, AT);
}
template <typename T>
PYHESSK_GLOBAL void gather_kernel(index_t total, index_t nd, index_t d, const T* S, const T* AT, const index_t* sb,
                                  const index_t* ab, T* out) {
  PYHESSK_GRID_STRIDE(i, total) gather_step<T>(i, nd, d, S, AT, sb, ab, out);
}
template <typename T>
PYHESSK_GLOBAL void contract_kernel(index_t total, index_t n, index_t d, index_t m, const T* S_l, const T* U, T* Tl) {
  PYHESSK_GRID_STRIDE(i, total) contract_step<T>(i, n, d, m, S_l, U, Tl);
}
template <typename T>
PYHESSK_GLOBAL void scatter_columns_kernel(index_t total, index_t m, index_t n_prev, const T* R, index_t w0, T* out) {
  PYHESSK_GRID_STRIDE(i, total) scatter_columns_step<T>(i, m, n_prev, R, w0, out);
}

// One block of kReduceThreads per entry t (gridDim.x = number of entries):
// out[t] = sc Σ_k entry_term + lam[t] (lam[t] = λ on the weight diagonal, else 0).
template <typename T>
PYHESSK_GLOBAL void entries_kernel(index_t n, index_t d, const T* S, const T* AT, const index_t* sp, const index_t* ap,
                                   const index_t* sq, const index_t* aq, const T* lam, T sc, T* out) {
  const index_t t = blockIdx.x;
  double part = 0;
  for (index_t k = threadIdx.x; k < n; k += blockDim.x) part += double(entry_term<T>(k, d, S, AT, sp[t], ap[t], sq[t], aq[t]));
  const double total = block_sum(part);
  if (threadIdx.x == 0) out[t] = sc * T(total) + lam[t];
}

// One block of kReduceThreads per entry t: the running sums of π over k into cdf (n per entry; a chunk per
// thread, the chunk offsets scanned by thread 0), then draws r = threadIdx.x, +blockDim.x, … < s.
template <typename T>
PYHESSK_GLOBAL void sample_kernel(index_t n, index_t d, index_t s, unsigned long long seed, index_t t0, const T* S,
                                  const T* AT, const T* nu, const index_t* sp, const index_t* ap, const index_t* np,
                                  const index_t* sq, const index_t* aq, const index_t* nq, const T* lam, T sc,
                                  double* cdf_ws, T* out) {
  __shared__ double offsets[kReduceThreads];
  const index_t t = blockIdx.x;
  double* cdf = cdf_ws + t * n;
  const index_t chunk = (n + kReduceThreads - 1) / kReduceThreads;
  const index_t begin = index_t(threadIdx.x) * chunk, end = begin + chunk < n ? begin + chunk : n;
  double run = 0;
  for (index_t k = begin; k < end; ++k) {
    run += sample_weight<T>(k, AT, nu, ap[t], np[t], aq[t], nq[t]);
    cdf[k] = run;
  }
  offsets[threadIdx.x] = run;
  __syncthreads();
  if (threadIdx.x == 0) {
    double acc = 0;
    for (int q = 0; q < kReduceThreads; ++q) {
      const double v = offsets[q];
      offsets[q] = acc;
      acc += v;
    }
  }
  __syncthreads();
  for (index_t k = begin; k < end; ++k) cdf[k] += offsets[threadIdx.x];
  __syncthreads();
  const double total = cdf[n - 1];
  double part = 0;
  if (total > 0) {
    const unsigned long long state0 = sample_stream(seed, t0 + t);
    for (index_t r = threadIdx.x; r < s; r += blockDim.x)
      part += sample_draw<T>(state0, r, cdf, n, d, S, AT, sp[t], ap[t], sq[t], aq[t]);
  }
  const double sum = block_sum(part);
  if (threadIdx.x == 0) out[t] = T(double(sc) * sum / double(s)) + lam[t];
}

}  // namespace cuda
}  // namespace pyhessk
#endif
