#include "cpu/gnh_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/dispatch.h"
#include "cpu/clones.h"
#include "cpu/gemm_cpu.h"
#include "cpu/helpers.h"
#include "cpu/sweeps.h"

namespace pyhessk::cpu {
namespace {

// The entry loops share their items with opportunistic helper threads (cpu/helpers.h), which never make
// the caller wait for a core. The work of an item is counted in numbers: n·d streamed per exact entry; n
// per sampled entry and, per draw, 4·d (a gathered number costs about four streamed ones).
constexpr int kDrawBatch = 64;            // draws of the sampler located before their terms are summed

// splitmix64: a counter-based stream, so entry t's draws depend only on (seed, t).
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline double uniform01(uint64_t& state) { return double(splitmix64(state) >> 11) * 0x1.0p-53; }

// The running sums of one entry's sampling distribution, searchable through a tree of fanout 16: level 0
// holds the sums C[0..n) after a 0 (C[−1] = 0), each level above the last sum of every 16 entries of the
// one below, up to a top of at most 16; every level is padded with +∞ to a multiple of 16. Finding the
// first k with C[k] > u is then one 16-wide compare-and-count per level (2 levels for n ≤ 256, 3 for
// n ≤ 4,096) instead of the 8 or 12 dependent steps of a binary search.
struct SumTree {
  explicit SumTree(int n) : n(n) {
    int64_t end = 1;
    for (int size = n;; size = (size + 15) / 16) {
      offset.push_back(end);
      end += (size + 15) / 16 * 16;
      if (size <= 16) break;
    }
    data.assign(end, std::numeric_limits<double>::infinity());  // pads are never written again
    data[0] = 0;
  }
  double* sums() { return data.data() + 1; }
  // the levels above the sums, once these are written
  void build() {
    for (size_t j = 1, size = size_t(n); j < offset.size(); ++j) {
      size = (size + 15) / 16;
      const double* below = data.data() + offset[j - 1];
      double* level = data.data() + offset[j];
      for (size_t i = 0; i < size; ++i) level[i] = below[16 * i + 15];  // a partial group's last is a pad: +∞
    }
  }
  int n;
  std::vector<int64_t> offset;  // of each level in data, from the sums up
  std::vector<double> data;
};

// The sampling weights w_k = |a_p[k] ν_p[k]|·|a_q[k] ν_q[k]| (products of T, exact in double) and their
// running sums into C[0..n); returns the total. The weights are one vectorized pass; the running sum is
// four independent chains over the quarters of the batch (a single chain waits on every addition),
// shifted by the quarters before them afterwards. Every shifted sum is at least the one before it, so
// the sums stay nondecreasing.
template <typename T>
PYHESSK_CPU_CLONES double sampling_sums(int n, const T* ap, const T* nup, const T* aq, const T* nuq, double* C) {
  for (int k = 0; k < n; ++k) C[k] = std::fabs(double(ap[k]) * nup[k]) * std::fabs(double(aq[k]) * nuq[k]);
  const int quarter = n / 4;
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  double *c0 = C, *c1 = C + quarter, *c2 = C + 2 * quarter, *c3 = C + 3 * quarter;
  for (int k = 0; k < quarter; ++k) {
    c0[k] = s0 += c0[k];
    c1[k] = s1 += c1[k];
    c2[k] = s2 += c2[k];
    c3[k] = s3 += c3[k];
  }
  for (int k = 4 * quarter; k < n; ++k) C[k] = s3 += C[k];  // the remainder goes on the last chain
  const double o1 = s0, o2 = o1 + s1, o3 = o2 + s2;
  for (int k = 0; k < quarter; ++k) c1[k] += o1, c2[k] += o2;
  for (int k = 3 * quarter; k < n; ++k) C[k] += o3;
  return C[n - 1];
}

// How many of x[0..16) are ≤ u: compares and adds only, vectorized by the clone's instruction set.
__attribute__((always_inline)) inline int count_at_most16(const double* x, double u) {
  typedef double lanes __attribute__((vector_size(32), aligned(sizeof(double)), may_alias));
  typedef int64_t mask __attribute__((vector_size(32)));
  const lanes* v = reinterpret_cast<const lanes*>(x);
  const lanes uu = {u, u, u, u};
  const mask m = (v[0] <= uu) + (v[1] <= uu) + (v[2] <= uu) + (v[3] <= uu);  // −1 per true comparison
  return -int(m[0] + m[1] + m[2] + m[3]);
}

// `count` draws of one entry from its stream: the sample k of each into drawn, with a prefetch of its
// factor rows (a cache miss each on a large batch, which then overlap).
template <typename T>
PYHESSK_CPU_CLONES void locate_draws(const SumTree& tree, double total, uint64_t& state, int count, int* drawn,
                                     const T* Sp, const T* Sq, int d) {
  const double* data = tree.data.data();
  const int64_t* offset = tree.offset.data();
  const int top = int(tree.offset.size()) - 1;
  for (int r = 0; r < count; ++r) {
    const double u = uniform01(state) * total;
    int k = 0;  // the group containing the first sum > u, refined level by level
    for (int j = top; j >= 0; --j) k = 16 * k + count_at_most16(data + offset[j] + 16 * k, u);
    // u = total after rounding: the count can pass the last group of a full level; its read then runs into
    // the level above (stored after it, so still inside data), and k ends at or above n
    k = std::min(k, tree.n - 1);
    drawn[r] = k;
    const int64_t first = int64_t(k) * d, last = first + d - 1;  // a row of d values may span two lines
    __builtin_prefetch(Sp + first);
    __builtin_prefetch(Sq + first);
    __builtin_prefetch(Sp + last);
    __builtin_prefetch(Sq + last);
  }
}

// S_L (d, d, n) with S_L[i, a, k] = C_kᵀ[a][i]: per sample into (n, d·d), then one tiled transpose.
template <Loss kLoss, typename T>
void output_factors(int n, int d, const T* aux, T* S_L) {
  const int64_t dd = int64_t(d) * d;
  buffer<T> rows(n * dd);
  std::vector<T> ct(dd);
  for (int k = 0; k < n; ++k) {
    LossOps<kLoss>::factor(aux + int64_t(k) * d, d, ct.data());  // ct[a·d + i] = Cᵀ[a][i]
    T* row = rows.data() + k * dd;
    for (int i = 0; i < d; ++i)
      for (int a = 0; a < d; ++a) row[int64_t(i) * d + a] = ct[size_t(a) * d + i];
  }
  transpose<T>(n, dd, rows.data(), S_L);
}

// The norms ν[i, k] = ‖S[i, :, k]‖ of S (m, d, n), scaling S[i, :, k] by f[i, k] first when f is given
// (φ′ of the layer, (m, n)): one pass over S. With one output (d = 1) the norm is |S[i, 0, k]|: the same
// number as √(x²) in double (exact square, exactly rounded root) without a double square root per entry,
// which took a quarter of the whole precomputation at d = 1 (config P).
template <typename T>
PYHESSK_CPU_CLONES void scale_and_norms(int m, int d, int n, const T* f, T* S, T* nu) {
  if (d == 1) {
    const int64_t size = int64_t(m) * n;
    if (f)
      for (int64_t i = 0; i < size; ++i) S[i] *= f[i];
    for (int64_t i = 0; i < size; ++i) nu[i] = std::abs(S[i]);
    return;
  }
  std::vector<acc_t<T>> sq(n);
  for (int i = 0; i < m; ++i) {
    std::fill(sq.begin(), sq.end(), acc_t<T>(0));
    const T* fi = f ? f + int64_t(i) * n : nullptr;
    for (int a = 0; a < d; ++a) {
      T* x = S + (int64_t(i) * d + a) * n;
      if (fi)
        for (int k = 0; k < n; ++k) {
          x[k] *= fi[k];
          sq[k] += acc_t<T>(x[k]) * x[k];
        }
      else
        for (int k = 0; k < n; ++k) sq[k] += acc_t<T>(x[k]) * x[k];
    }
    T* out = nu + int64_t(i) * n;
    for (int k = 0; k < n; ++k) out[k] = T(std::sqrt(sq[k]));
  }
}

// Software prefetch for the passes over the factors. S_l is stored (n_l, d, n): a pass reads rows of n
// numbers (4 KiB for n = 1024 in float32), and the hardware prefetchers stop at every page boundary, so
// each row would start a fresh miss stream; measured on the contractions, 12–15 GB/s without and about
// 35 GB/s with a prefetch kAhead bytes ahead of each row being read. A prefetch never faults, so reaching
// past the end of S is harmless (the address is formed as an integer).
constexpr int kAhead = 8192;      // bytes ahead of the read position
constexpr int kGroupBytes = 256;  // bytes covered per prefetch step: four cache lines
template <typename T>
constexpr int kGroup = kGroupBytes / int(sizeof(T));  // numbers per prefetch step

template <typename T>
inline void prefetch_ahead(const T* x) {
#if defined(__GNUC__)
  const auto at = reinterpret_cast<std::uintptr_t>(x) + kAhead;
  for (int b = 0; b < kGroupBytes; b += 64) __builtin_prefetch(reinterpret_cast<const void*>(at + b), 0, 0);
#else
  (void)x;
#endif
}

// body(s0, s1) over [0, n) in groups of kGroup<T> numbers; with `prefetch`, each of `rows` is first
// prefetched kAhead bytes ahead of the group.
template <typename T, size_t R, typename Body>
inline void sweep_rows(int n, bool prefetch, const T* const (&rows)[R], Body&& body) {
  for (int s0 = 0; s0 < n; s0 += kGroup<T>) {
    if (prefetch)
      for (const T* x : rows) prefetch_ahead(x + s0);
    body(s0, std::min(n, s0 + kGroup<T>));
  }
}

// dst (m, r, k) from src (r, m, k): the two outer axes swapped, runs of k numbers moved whole. Tiles of
// 16 × 8 runs, walked along the destination: rows of a power-of-two length then do not evict each other.
template <typename T>
void swap_outer(int64_t r, int64_t m, int k, const T* src, T* dst) {
  constexpr int64_t kTileR = 16, kTileM = 8;
  for (int64_t a0 = 0; a0 < r; a0 += kTileR)
    for (int64_t b0 = 0; b0 < m; b0 += kTileM) {
      const int64_t a1 = std::min(r, a0 + kTileR), b1 = std::min(m, b0 + kTileM);
      for (int64_t b = b0; b < b1; ++b)
        for (int64_t a = a0; a < a1; ++a)
          for (int t = 0; t < k; ++t) dst[(b * r + a) * k + t] = src[(a * m + b) * k + t];
    }
}

// out (m, c, k) = hw (m, k, c) with the last two axes swapped, plus λ·v (v (m, c, k)): the weight block of
// G V for k vectors, from the GEMM's rows (unit, vector) to the caller's (unit, input, vector).
template <typename T>
PYHESSK_CPU_CLONES void unpack_rows(int m, int c, int k, const T* hw, T lam, const T* v, T* out) {
  for (int i = 0; i < m; ++i) {
    const T* h = hw + int64_t(i) * k * c;
    T* o = out + int64_t(i) * c * k;
    const T* vi = v + int64_t(i) * c * k;
    if (lam == T(0))
      for (int b = 0; b < c; ++b)
        for (int j = 0; j < k; ++j) o[int64_t(b) * k + j] = h[int64_t(j) * c + b];
    else
      for (int b = 0; b < c; ++b)
        for (int j = 0; j < k; ++j) o[int64_t(b) * k + j] = h[int64_t(j) * c + b] + lam * vi[int64_t(b) * k + j];
  }
}

// The factored product's first contraction, for one layer: P[i, j, :] += v_b[i, j] (vb (m, k), or null
// without biases), then u[j, c, :] += P[i, j, :] ⊙ S[i, c, :] for S (m, d, n), P (m, k, n), u (k, d, n). Outputs are taken two at a time so that each P row is
// loaded once per pair. One thread: an OpenMP team beside OpenBLAS's spinning workers made it 2–8× slower.
template <typename T>
PYHESSK_CPU_CLONES void contract_in(int m, int d, int k, int n, const T* S, const T* vb, T* P, T* u) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < k; ++j) {
      T* __restrict p = P + (int64_t(i) * k + j) * n;
      if (vb) {
        const T b = vb[int64_t(i) * k + j];
        for (int s = 0; s < n; ++s) p[s] += b;
      }
      const bool first = j == 0;  // the rows of S_i come from memory for j = 0, then from cache
      int c = 0;
      for (; c + 2 <= d; c += 2) {
        const T* __restrict x0 = S + (int64_t(i) * d + c) * n;
        const T* __restrict x1 = x0 + n;
        T* __restrict u0 = u + (int64_t(j) * d + c) * n;
        T* __restrict u1 = u0 + n;
        sweep_rows<T>(n, first, {x0, x1}, [&](int s0, int s1) {
          for (int s = s0; s < s1; ++s) {
            u0[s] += p[s] * x0[s];
            u1[s] += p[s] * x1[s];
          }
        });
      }
      if (c < d) {
        const T* __restrict x0 = S + (int64_t(i) * d + c) * n;
        T* __restrict u0 = u + (int64_t(j) * d + c) * n;
        sweep_rows<T>(n, first, {x0}, [&](int s0, int s1) {
          for (int s = s0; s < s1; ++s) u0[s] += p[s] * x0[s];
        });
      }
    }
}

// Σ_s of the product of the first kFactors rows at s: x0[s], x0[s]·x1[s] or x0[s]·(x1[s]·x2[s]), over
// [0, n) in a fixed order (the result does not depend on the machine). The
// whole groups of 32 terms go to 32 interleaved partial sums in T, added into acc_t every kBlock terms, so
// that no float partial sums more than 16 terms and the error does not grow with n; the last n mod 32
// terms go straight to acc_t. Written as sums of rows of 32 through restrict pointers so that the x86-64-v3
// clones vectorize: loops of other shapes (interleaved partials over a flat index, a lambda for the term)
// measured 1.5–4× slower there, and a running sum in double 9× slower.
template <int kFactors, typename T>
PYHESSK_CPU_CLONES acc_t<T> blocked_dot(int n, const T* __restrict x0, const T* __restrict x1 = nullptr,
                                        const T* __restrict x2 = nullptr) {
  constexpr int kParts = 32, kBlock = 512;
  auto term = [&](int s) {
    if constexpr (kFactors == 1) return x0[s];
    else if constexpr (kFactors == 2) return x0[s] * x1[s];
    else return x0[s] * (x1[s] * x2[s]);
  };
  acc_t<T> acc[kParts] = {};
  T part[kParts];
  const int whole = n - n % kParts;
  int s = 0;
  while (s < whole) {
    const int end = std::min(whole, s + kBlock);
    for (int t = 0; t < kParts; ++t) part[t] = term(s + t);
    for (int b = s + kParts; b < end; b += kParts) {
      const T* __restrict r0 = x0 + b;
      const T* __restrict r1 = kFactors > 1 ? x1 + b : nullptr;
      const T* __restrict r2 = kFactors > 2 ? x2 + b : nullptr;
      for (int t = 0; t < kParts; ++t) {
        if constexpr (kFactors == 1) part[t] += r0[t];
        else if constexpr (kFactors == 2) part[t] += r0[t] * r1[t];
        else part[t] += r0[t] * (r1[t] * r2[t]);
      }
    }
    for (int t = 0; t < kParts; ++t) acc[t] += part[t];
    s = end;
  }
  acc_t<T> total = 0;
  for (; s < n; ++s) total += term(s);
  for (int t = 0; t < kParts; ++t) total += acc[t];
  return total;
}

// w = a ⊙ b in T: the first product of the terms (a[k]·b[k])·(x[k]·y[k]) of an entry with two activations.
template <typename T>
PYHESSK_CPU_CLONES void weights(int n, const T* __restrict a, const T* __restrict b, T* __restrict w) {
  for (int k = 0; k < n; ++k) w[k] = a[k] * b[k];
}

template <typename T>
T row_sum(int n, const T* x) {
  return T(blocked_dot<1>(n, x));
}

// out (rows, n) = x (rows, n) ⊙ a (n,) broadcast over the rows, or a copy where a is null (a bias: a = 1).
// Written over restrict pointers and cloned: through the factors' accessors the loop ran scalar.
template <typename T>
PYHESSK_CPU_CLONES void scaled_rows(int rows, int n, const T* __restrict a, const T* __restrict x,
                                    T* __restrict out) {
  for (int r = 0; r < rows; ++r) {
    const T* __restrict xr = x + int64_t(r) * n;
    T* __restrict o = out + int64_t(r) * n;
    if (a)
      for (int k = 0; k < n; ++k) o[k] = a[k] * xr[k];
    else
      std::copy(xr, xr + n, o);
  }
}

// The second contraction, for one layer: Q[i, j, :] = Σ_c S[i, c, :] ⊙ u[j, c, :] → Q (m, k, n), and, when
// bias_out is given, bias_out[i·k + j] = Σ_s Q[i, j, s] (the bias block of G V).
template <typename T>
PYHESSK_CPU_CLONES void contract_out(int m, int d, int k, int n, const T* S, const T* u, T* Q, T* bias_out) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < k; ++j) {
      T* __restrict q = Q + (int64_t(i) * k + j) * n;
      const T* Si = S + int64_t(i) * d * n;
      const T* uj = u + int64_t(j) * d * n;
      const bool first = j == 0;  // as in contract_in
      int c = 0;
      if (d % 2) {
        const T *__restrict x0 = Si, *__restrict u0 = uj;
        sweep_rows<T>(n, first, {x0}, [&](int s0, int s1) {
          for (int s = s0; s < s1; ++s) q[s] = x0[s] * u0[s];
        });
        c = 1;
      } else {
        const T *__restrict x0 = Si, *__restrict x1 = Si + n, *__restrict u0 = uj, *__restrict u1 = uj + n;
        sweep_rows<T>(n, first, {x0, x1}, [&](int s0, int s1) {
          for (int s = s0; s < s1; ++s) q[s] = x0[s] * u0[s] + x1[s] * u1[s];
        });
        c = 2;
      }
      for (; c < d; c += 2) {
        const T *__restrict x0 = Si + int64_t(c) * n, *__restrict x1 = x0 + n;
        const T *__restrict u0 = uj + int64_t(c) * n, *__restrict u1 = u0 + n;
        sweep_rows<T>(n, first, {x0, x1}, [&](int s0, int s1) {
          for (int s = s0; s < s1; ++s) q[s] += x0[s] * u0[s] + x1[s] * u1[s];
        });
      }
      if (bias_out) bias_out[int64_t(i) * k + j] = row_sum(n, q);
    }
}

// A carried layer's rows times φ′: P[i, j, :] = f[i, :] ⊙ (P[i, j, :] + v_b[i, j]) for P (m, k, n), f = φ′ᵀ
// (m, n), vb (m, k) or null: the R-values before the GEMM with W_{l+1}, and Q_l after the one with W_{l+1}ᵀ.
template <typename T>
PYHESSK_CPU_CLONES void carry_rows(int m, int k, int n, const T* vb, const T* f, T* P) {
  for (int i = 0; i < m; ++i) {
    const T* __restrict fi = f + int64_t(i) * n;
    for (int j = 0; j < k; ++j) {
      T* __restrict p = P + (int64_t(i) * k + j) * n;
      const T b = vb ? vb[int64_t(i) * k + j] : T(0);
      for (int s = 0; s < n; ++s) p[s] = fi[s] * (p[s] + b);
    }
  }
}

}  // namespace

template <typename T>
GnhFactors<T>::GnhFactors(const Linearization<T>& lin)
    : s_(lin.shape()), n_(lin.n()), d_(lin.d()), L_(lin.shape().layers()), scale_(T(lin.scale())), lin_(&lin) {
  const int n = n_, d = d_;
  S_.resize(L_);
  AT_.resize(L_);
  nu_.resize(L_);
  dT_.resize(L_);
  buffer<T> f;  // φ′_lᵀ of the layer in hand
  for (int l = 1; l <= L_; ++l) nu_[l - 1].resize(int64_t(s_.sizes[l]) * n);
  S_[L_ - 1].resize(int64_t(d) * n * d);
  PYHESSK_DISPATCH_LOSS(s_.loss, kLoss, [&] { output_factors<kLoss>(n, d, lin.aux(), S_[L_ - 1].data()); });
  scale_and_norms<T>(d, d, n, nullptr, S_[L_ - 1].data(), nu_[L_ - 1].data());
  for (int l = L_ - 1; l >= 1; --l) {
    // S_l = D_l W_{l+1}ᵀ S_{l+1}: one GEMM (n_l × n_{l+1}) · (n_{l+1} × n·d), then D_l and the norms in one pass
    const int n_l = s_.sizes[l], n_next = s_.sizes[l + 1];
    const T* W = lin.W(l + 1);  // (n_{l+1}, n_l)
    S_[l - 1].resize(int64_t(n_l) * n * d);
    gemm<T>(true, false, n_l, n * d, n_next, T(1), W, n_l, S_[l].data(), n * d, T(0), S_[l - 1].data(), n * d);
    f.resize(int64_t(n_l) * n);
    transpose<T>(n, n_l, lin.dphi(l), f.data());
    scale_and_norms<T>(n_l, d, n, f.data(), S_[l - 1].data(), nu_[l - 1].data());
  }
  for (int l = 1; l <= L_; ++l) {
    const int n_prev = s_.sizes[l - 1];
    AT_[l - 1].resize(int64_t(n_prev) * n);
    transpose<T>(n, n_prev, lin.act(l - 1), AT_[l - 1].data());
  }
}

template <typename T>
typename GnhFactors<T>::Index GnhFactors<T>::decode(int64_t p) const {
  PYHESSK_CHECK_INDEX(p >= 0 && p < s_.num_params, "parameter index " << p << " is out of range for "
                                                                       << s_.num_params << " parameters");
  int l = L_;
  while (s_.w_off[l - 1] > p) --l;
  const int64_t local = p - s_.w_off[l - 1];
  const int n_prev = s_.sizes[l - 1];
  const int64_t n_w = int64_t(s_.sizes[l]) * n_prev;
  if (local < n_w) return {l, int(local / n_prev), int(local % n_prev)};
  return {l, int(local - n_w), -1};
}

template <typename T>
T GnhFactors<T>::l2_term(int64_t p, int64_t q) const {
  return (s_.l2 != 0 && p == q && decode(p).col >= 0) ? T(s_.l2) : T(0);
}

template <typename T>
void GnhFactors<T>::gather(const Index& x, T* out) const {
  scaled_rows<T>(d_, n_, act(x), S(x), out);
}

template <typename T>
void GnhFactors<T>::entries(const int64_t* rows, const int64_t* cols, int64_t m, T* out) const {
  for (int64_t t = 0; t < m; ++t) decode(rows[t]), decode(cols[t]);  // range checks before any work
  Helpers::run(m, double(n_) * d_, [&](Helpers::Claim& next) {
    std::vector<T> w(n_);  // per thread: a_p ⊙ a_q of an entry, the product the 4-factor term starts with
    for (int64_t begin, end; next(begin, end);)
    for (int64_t t = begin; t < end; ++t) {
      const Index p = decode(rows[t]), q = decode(cols[t]);
      const T *Sp = S(p), *Sq = S(q);
      // Σ_k a_p[k] a_q[k] ⟨S_p[:, k], S_q[:, k]⟩, swept output by output so every pass runs over contiguous
      // samples. With two activations their product is formed once per entry, not once per output: the
      // terms w[k]·(x[k]·y[k]) are those of (a_p[k]·a_q[k])·(x[k]·y[k]), rounding included.
      const T* ap = act(p);
      const T* aq = act(q);
      if (ap && aq) {
        weights(n_, ap, aq, w.data());
        ap = w.data(), aq = nullptr;
      }
      acc_t<T> total = 0;
      for (int c = 0; c < d_; ++c) {
        const T *x = Sp + int64_t(c) * n_, *y = Sq + int64_t(c) * n_;
        if (ap || aq)
          total += blocked_dot<3>(n_, ap ? ap : aq, x, y);
        else
          total += blocked_dot<2>(n_, x, y);
      }
      out[t] = scale_ * T(total) + l2_term(rows[t], cols[t]);
    }
  });
}

template <typename T>
void GnhFactors<T>::block(const int64_t* I, int64_t mi, const int64_t* J, int64_t mj, T* out) const {
  const int64_t nd = int64_t(n_) * d_;
  buffer<T> XI(mi * nd), YJ(mj * nd);
  for (int64_t t = 0; t < mi; ++t) gather(decode(I[t]), XI.data() + t * nd);
  for (int64_t t = 0; t < mj; ++t) gather(decode(J[t]), YJ.data() + t * nd);
  gemm<T>(false, true, int(mi), int(mj), int(nd), scale_, XI.data(), int(nd), YJ.data(), int(nd), T(0), out, int(mj));
  if (s_.l2 != 0)
    for (int64_t a = 0; a < mi; ++a)
      for (int64_t b = 0; b < mj; ++b) out[a * mj + b] += l2_term(I[a], J[b]);
}

template <typename T>
void GnhFactors<T>::columns(const int64_t* J, int64_t m, T* out) const {
  const int64_t N = s_.num_params;
  for (int64_t t = 0; t < m; ++t) decode(J[t]);
  buffer<T> u(int64_t(n_) * d_), Tl, col(N);
  for (int64_t t = 0; t < m; ++t) {
    gather(decode(J[t]), u.data());
    for (int l = 1; l <= L_; ++l) {
      const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
      Tl.assign(int64_t(n_l) * n_, T(0));  // T_l[i, k] = ⟨S_{l,k}[:, i], u_k⟩
      const T* S = S_[l - 1].data();
      for (int i = 0; i < n_l; ++i) {
        T* t = Tl.data() + int64_t(i) * n_;
        for (int c = 0; c < d_; ++c) {
          const T *x = S + (int64_t(i) * d_ + c) * n_, *uc = u.data() + int64_t(c) * n_;
          sweep_rows<T>(n_, true, {x}, [&](int k0, int k1) {
            for (int k = k0; k < k1; ++k) t[k] += x[k] * uc[k];
          });
        }
      }
      // G[W_l, q] = s T_l A_{l−1}: (n_l × n) · (n × n_{l−1}), with A_{l−1} = AT_lᵀ
      gemm<T>(false, true, n_l, n_prev, n_, scale_, Tl.data(), n_, AT_[l - 1].data(), n_, T(0),
              col.data() + s_.w_off[l - 1], n_prev);
      if (s_.bias)
        for (int i = 0; i < n_l; ++i) col[s_.b_off[l - 1] + i] = scale_ * row_sum(n_, Tl.data() + int64_t(i) * n_);
    }
    col[J[t]] += l2_term(J[t], J[t]);
    for (int64_t p = 0; p < N; ++p) out[p * m + t] = col[p];
  }
}

template <typename T>
void GnhFactors<T>::diagonal(T* out) const {
  buffer<T> nu2, A2;
  for (int l = 1; l <= L_; ++l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    nu2.resize(int64_t(n_l) * n_);
    for (size_t i = 0; i < nu2.size(); ++i) nu2[i] = nu_[l - 1][i] * nu_[l - 1][i];
    A2.resize(int64_t(n_prev) * n_);
    for (size_t i = 0; i < A2.size(); ++i) A2[i] = AT_[l - 1][i] * AT_[l - 1][i];
    // G_pp = s Σ_k ν²_{l,k,i} a²_{l−1,k}[j]: (n_l × n) · (n × n_{l−1})
    gemm<T>(false, true, n_l, n_prev, n_, scale_, nu2.data(), n_, A2.data(), n_, T(0), out + s_.w_off[l - 1], n_prev);
    if (s_.l2 != 0)
      for (int64_t i = 0; i < int64_t(n_l) * n_prev; ++i) out[s_.w_off[l - 1] + i] += T(s_.l2);
    if (s_.bias)
      for (int i = 0; i < n_l; ++i) out[s_.b_off[l - 1] + i] = scale_ * row_sum(n_, nu2.data() + int64_t(i) * n_);
  }
}

template <typename T>
const T* GnhFactors<T>::dphiT(int l) {
  buffer<T>& f = dT_[l - 1];
  if (f.empty()) {
    f.resize(int64_t(s_.sizes[l]) * n_);
    transpose<T>(n_, s_.sizes[l], lin_->dphi(l), f.data());
  }
  return f.data();
}

template <typename T>
void GnhFactors<T>::gnvp(const T* V, int k, T* out, const uint8_t* carry) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int n = n_, d = d_;
  auto carried = [&](int l) { return carry && l < L_ && carry[l - 1]; };
  int max_nl = 0;
  int64_t max_w = 0;
  for (int l = 1; l <= L_; ++l) {
    max_nl = std::max(max_nl, s_.sizes[l]);
    max_w = std::max(max_w, int64_t(s_.sizes[l]) * s_.sizes[l - 1]);
  }
  u_.assign(int64_t(n) * k * d, T(0));
  if (P_.size() < size_t(k) * max_nl * n) P_.resize(size_t(k) * max_nl * n), R_.resize(size_t(k) * max_nl * n);
  if (k > 1 && pack_.size() < size_t(k * max_w)) pack_.resize(size_t(k * max_w)), hw_.resize(size_t(k * max_w));
  T* u = u_.data();  // (k, d, n)
  T* P = P_.data();  // (n_l, k, n): rows (unit, vector), samples fastest, so both contractions stream S_l
  T* R = R_.data();  // a carried layer's R-values, the same layout
  // Two passes over the factors, one per contraction. Fusing them over chunks of samples (S read once)
  // was measured slower: a chunk's factor rows are short strided segments that the prefetchers miss.

  // u_s = s Σ_l S_{l,s}ᵀ r_{l,s}, r_l = V_l a_{l−1} + v_l: per layer one GEMM and one pass over S_l. A carried
  // layer l skips S_l: since S_l = Φ′_l W_{l+1}ᵀ S_{l+1}, it adds W_{l+1}(φ′_l ⊙ r_l) to r_{l+1} instead (the
  // R-forward step, one GEMM with n_{l+1} rows), cheaper than streaming S_l when layer l+1 is narrow.
  bool from_below = false;  // whether R holds the carried (φ′ ⊙ r) of layer l − 1
  for (int l = 1; l <= L_; ++l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    const int64_t w0 = s_.w_off[l - 1];
    if (k == 1) {  // P (n_l × n) = V_l A_{l−1}ᵀ
      gemm<T>(false, false, n_l, n, n_prev, T(1), V + w0, n_prev, AT_[l - 1].data(), n, T(0), P, n);
    } else {  // V_l (n_l, n_{l−1}, k) → (n_{l−1}, n_l, k), then P (n_l·k × n) = packᵀ A_{l−1}ᵀ
      swap_outer<T>(n_l, n_prev, k, V + w0 * k, pack_.data());
      gemm<T>(true, false, n_l * k, n, n_prev, T(1), pack_.data(), n_l * k, AT_[l - 1].data(), n, T(0), P, n);
    }
    if (from_below)  // P (n_l × k·n) += W_l R (n_{l−1} × k·n)
      gemm<T>(false, false, n_l, k * n, n_prev, T(1), lin_->W(l), n_prev, R, k * n, T(1), P, k * n);
    const T* vb = s_.bias ? V + s_.b_off[l - 1] * k : nullptr;
    from_below = carried(l);
    if (from_below) {
      carry_rows<T>(n_l, k, n, vb, dphiT(l), P);
      std::swap(P, R);
    } else {
      contract_in<T>(n_l, d, k, n, S_[l - 1].data(), vb, P, u);
    }
  }
  for (int64_t i = 0; i < int64_t(n) * k * d; ++i) u[i] *= scale_;

  // Per layer, from the top, Q_l = S_l u (the transposed pass over S_l) or, for a carried layer, Q_l =
  // φ′_l ⊙ (W_{l+1}ᵀ Q_{l+1}), then one GEMM Q_l A_{l−1} for the weight block.
  const T lam = T(s_.l2);
  T* Q = P;
  T* above = R;  // Q_{l+1}
  for (int l = L_; l >= 1; --l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    const int64_t w0 = s_.w_off[l - 1], nl = int64_t(n_l) * n_prev;
    T* bias_out = s_.bias ? out + s_.b_off[l - 1] * k : nullptr;
    if (carried(l)) {
      gemm<T>(true, false, n_l, k * n, s_.sizes[l + 1], T(1), lin_->W(l + 1), n_l, above, k * n, T(0), Q, k * n);
      carry_rows<T>(n_l, k, n, nullptr, dphiT(l), Q);  // Q_l = φ′_l ⊙ W_{l+1}ᵀ Q_{l+1}
      if (bias_out)
        for (int64_t r = 0; r < int64_t(n_l) * k; ++r) bias_out[r] = row_sum(n, Q + r * n);
    } else {
      contract_out<T>(n_l, d, k, n, S_[l - 1].data(), u, Q, bias_out);
    }
    if (k == 1) {  // weight block (n_l × n_{l−1}) = Q_l A_{l−1}, straight into out
      gemm<T>(false, true, n_l, n_prev, n, T(1), Q, n, AT_[l - 1].data(), n, T(0), out + w0, n_prev);
      if (lam != T(0))
        for (int64_t i = 0; i < nl; ++i) out[w0 + i] += lam * V[w0 + i];
    } else {  // rows (unit, vector); out wants (unit, input, vector)
      gemm<T>(false, true, k * n_l, n_prev, n, T(1), Q, n, AT_[l - 1].data(), n, T(0), hw_.data(), n_prev);
      unpack_rows<T>(n_l, n_prev, k, hw_.data(), lam, V + w0 * k, out + w0 * k);
    }
    std::swap(Q, above);
  }
}

template <typename T>
void GnhFactors<T>::sample_major() const {
  std::call_once(sk_once_, [&] {
    Sk_.resize(L_);
    for (int l = 1; l <= L_; ++l) {
      const int n_l = s_.sizes[l];
      Sk_[l - 1].resize(int64_t(n_l) * n_ * d_);
      for (int i = 0; i < n_l; ++i)  // (d, n) → (n, d) per unit
        transpose<T>(d_, n_, S_[l - 1].data() + int64_t(i) * d_ * n_, Sk_[l - 1].data() + int64_t(i) * n_ * d_);
    }
  });
}

template <typename T>
void GnhFactors<T>::sample(const int64_t* rows, const int64_t* cols, int64_t m, int64_t s, uint64_t seed,
                           T* out, int64_t groups) const {
  for (int64_t t = 0; t < m; ++t) decode(rows[t]), decode(cols[t]);
  sample_major();
  const std::vector<T> ones(n_, T(1));  // standing in for a bias's a
  Helpers::run(m, n_ + 4.0 * double(groups) * double(s) * d_, [&](Helpers::Claim& next) {
    // per thread, reused by its entries: the distribution
    SumTree tree(n_);
    const double* C = tree.sums();  // C[k]: the sum of the weights through sample k; C[−1] = 0
    int drawn[kDrawBatch];
    for (int64_t begin, end; next(begin, end);)
    for (int64_t t = begin; t < end; ++t) {
      const Index p = decode(rows[t]), q = decode(cols[t]);
      const T *nup = nu_[p.layer - 1].data() + int64_t(p.row) * n_, *nuq = nu_[q.layer - 1].data() + int64_t(q.row) * n_;
      const T* ap = act(p) ? act(p) : ones.data();  // act: null for a bias
      const T* aq = act(q) ? act(q) : ones.data();
      const double total = sampling_sums(n_, ap, nup, aq, nuq, tree.sums());
      if (!(total > 0 && total < std::numeric_limits<double>::infinity())) {
        // nothing to sample (the entry is exactly 0), or weights that are not finite numbers
        const T value = total == 0 ? T(0) : std::numeric_limits<T>::quiet_NaN();
        for (int64_t g = 0; g < groups; ++g) out[g * m + t] = value + l2_term(rows[t], cols[t]);
        continue;
      }
      tree.build();
      const T* Sp = Sk_[p.layer - 1].data() + int64_t(p.row) * n_ * d_;  // sample-major: a draw's d values
      const T* Sq = Sk_[q.layer - 1].data() + int64_t(q.row) * n_ * d_;
      uint64_t state = seed ^ (0xD1B54A32D192ED03ull * uint64_t(t + 1));
      for (int64_t g = 0; g < groups; ++g) {
        double acc = 0;  // Σ x_k / w_k over the draws; × total / s at the end
        for (int64_t r0 = 0; r0 < s; r0 += kDrawBatch) {  // draws in batches: first the samples, then the terms
          const int count = int(std::min<int64_t>(kDrawBatch, s - r0));
          locate_draws(tree, total, state, count, drawn, Sp, Sq, d_);
          for (int r = 0; r < count; ++r) {
            const int k = drawn[r];
            const double wk = C[k] - C[k - 1];
            if (!(wk > 0)) continue;  // (only after rounding: a sample of zero weight is never drawn)
            double dot = 0;
            const T *xp = Sp + int64_t(k) * d_, *xq = Sq + int64_t(k) * d_;
            for (int c = 0; c < d_; ++c) dot += double(xp[c]) * xq[c];
            acc += double(ap[k]) * aq[k] * dot / wk;
          }
        }
        out[g * m + t] = T(double(scale_) * (acc * total) / double(s)) + l2_term(rows[t], cols[t]);
      }
    }
  });
}

template class GnhFactors<float>;
template class GnhFactors<double>;

}  // namespace pyhessk::cpu
