// Forward, backward and R-passes of the C++ CPU engine. GEMM counts per layer (l ≥ 2 / l = 1) are those of
// ALGORITHMS.md §10: forward 1, gradient backward 2/1, R-forward 2/1, R-backward 4/1, Gauss–Newton
// backward 2/1. Every elementwise step is one fused sweep after its GEMM.
#include "cpu/linearization_cpu.h"

#include <algorithm>
#include <cstring>

#include "common/dispatch.h"
#include "cpu/clones.h"
#include "cpu/gemm_cpu.h"
#include "cpu/sweeps.h"

// The elementwise sweeps are compiled for x86-64-v3 and the baseline (cpu/clones.h); their transcendental
// functions (common/math.h) vectorize.

namespace pyhessk::cpu {
namespace {

// The elementwise sweeps run on one thread; BLAS owns the threads. Sweeps are memory-bound and sit between
// multithreaded GEMMs, and an OpenMP team beside BLAS's own pool makes the two spin against each other on
// few cores: measured on 2 cores, parallel sweeps (for ≥ 2²⁰ elements) made the block products 1.3–2.3×
// slower on the BENCH.md configs P, M and W, and no product faster.

// Chunking of block products over samples (see Linearization::reserve): numbers of R-quantities per
// product beyond which the batch is split, and the fewest samples of a chunk.
constexpr int64_t kChunkBudget = int64_t(1) << 18;
constexpr int64_t kChunkMinRows = 128;

template <typename T>
PYHESSK_CPU_CLONES void add_bias(int n, int m, const T* b, T* Z) {
  if (!b) return;
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < m; ++j) Z[int64_t(s) * m + j] += b[j];
}

// The activation sweeps go row by row, adding the bias as they go. A row that is not a whole number of
// 32-byte vectors ends in a scalar tail, and one scalar φ costs about what a vector of them does (a width
// of 50 floats: 6 vectors and 2 scalars per row). Such arrays get the bias in a pass of their own, then
// φ over all n·m numbers as one row, with one tail in all.
template <typename T>
constexpr bool whole_vectors(int m) {
  return m % int(32 / sizeof(T)) == 0;
}

// The rows of activation_pass below, with the bias test hoisted out of the loop: written as
// `b ? b[j] : 0`, the x86-64-v3 clone loads b[j] with vmaskmovps under an all-false mask when b is null,
// and a masked load from an unmapped page takes a microcode assist on every vector (measured 6× slower).
template <Act kAct, bool kBias, bool kDerivatives, typename T>
inline __attribute__((always_inline)) void activation_rows(int64_t rows, int64_t len, const T* b, T* Z, T* d1,
                                                           T* d2) {
  for (int64_t s = 0; s < rows; ++s) {
    T* z = Z + s * len;
    for (int64_t j = 0; j < len; ++j) {
      const T x = kBias ? z[j] + b[j] : z[j];
      if constexpr (kDerivatives) {
        T a, x1, x2;
        ActOps<kAct>::eval(x, a, x1, x2);
        z[j] = a;
        d1[s * len + j] = x1;
        if constexpr (!ActOps<kAct>::kD2Zero) d2[s * len + j] = x2;
      } else {
        z[j] = ActOps<kAct>::f(x);
      }
    }
  }
}

// Z ← φ(Z + b) in place, with φ′ into d1 and φ″ into d2 when kDerivatives (d2 may be null when φ″ ≡ 0):
// Z is (n, m), b is (m,) or null.
template <Act kAct, bool kDerivatives, typename T>
PYHESSK_CPU_CLONES void activation_pass(int n, int m, const T* b, T* Z, T* d1, T* d2) {
  int64_t rows = n, len = m;
  if (!whole_vectors<T>(m)) {  // the bias first, then one row of n·m
    add_bias(n, m, b, Z);
    rows = 1, len = int64_t(n) * m, b = nullptr;
  }
  if (b)
    activation_rows<kAct, true, kDerivatives>(rows, len, b, Z, d1, d2);
  else
    activation_rows<kAct, false, kDerivatives>(rows, len, b, Z, d1, d2);
}

template <Act kAct, typename T>
void activation_sweep(int n, int m, const T* b, T* Z, T* d1, T* d2) {
  activation_pass<kAct, true>(n, m, b, Z, d1, d2);
}

// the forward pass alone: no derivatives
template <Act kAct, typename T>
void activation_only(int n, int m, const T* b, T* Z) {
  activation_pass<kAct, false>(n, m, b, Z, static_cast<T*>(nullptr), static_cast<T*>(nullptr));
}

// out[j] = (out[j] if add) + Σ_s D[s, j] for D (n, m), the sum over samples in acc_t: blocks of kRows samples
// are summed in T, then added in acc_t, so the error does not grow with n and the inner loop stays at T's
// vector width (sum, part: m numbers of workspace each).
template <typename T>
PYHESSK_CPU_CLONES void column_sums(int n, int m, const T* D, T* out, std::vector<acc_t<T>>& sum, std::vector<T>& part,
                                    bool add = false) {
  constexpr int kRows = 16;
  sum.assign(m, acc_t<T>(0));
  part.resize(m);
  acc_t<T>* __restrict acc = sum.data();
  T* __restrict p = part.data();
  for (int s0 = 0; s0 < n; s0 += kRows) {
    const int s1 = std::min(n, s0 + kRows);
    std::memcpy(p, D + int64_t(s0) * m, sizeof(T) * m);
    for (int s = s0 + 1; s < s1; ++s) {
      const T* __restrict row = D + int64_t(s) * m;
      for (int j = 0; j < m; ++j) p[j] += row[j];
    }
    for (int j = 0; j < m; ++j) acc[j] += p[j];
  }
  for (int j = 0; j < m; ++j) out[j] = (add ? out[j] : T(0)) + T(acc[j]);
}

// R-forward epilogue: RZ (n, k, m) += v_l (k, m) (if given); RA = φ′ ⊙ RZ (if given, hidden layers).
template <typename T>
PYHESSK_CPU_CLONES void rforward_sweep(int n, int k, int m, const T* vb, const T* d1, T* RZ, T* RA) {
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < k; ++j) {
      T* z = RZ + (int64_t(s) * k + j) * m;
      if (vb) {
        const T* v = vb + int64_t(j) * m;
        for (int r = 0; r < m; ++r) z[r] += v[r];
      }
      if (RA) {
        T* ra = RA + (int64_t(s) * k + j) * m;
        const T* p = d1 + int64_t(s) * m;
        for (int r = 0; r < m; ++r) ra[r] = p[r] * z[r];
      }
    }
}

// R-backward epilogue: R{Δ} = φ′ ⊙ R{Γ} + φ″ ⊙ Γ ⊙ R{Z} in place of R{Γ} (n, k, m); d2 null when φ″ ≡ 0.
template <typename T>
PYHESSK_CPU_CLONES void rbackward_sweep(int n, int k, int m, const T* d1, const T* d2, const T* G, const T* RZ,
                                        T* RG) {
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < k; ++j) {
      const int64_t o = (int64_t(s) * k + j) * m, q = int64_t(s) * m;
      T* rg = RG + o;
      if (d2) {
        for (int c = 0; c < m; ++c) rg[c] = d1[q + c] * rg[c] + d2[q + c] * G[q + c] * RZ[o + c];
      } else {
        for (int c = 0; c < m; ++c) rg[c] = d1[q + c] * rg[c];
      }
    }
}

// Σ_s ℓ_s over the batch (in double), writing e = ∂ℓ/∂f and the loss head's aux rows.
template <Loss kLoss, typename T>
double loss_heads(int n, int d, const T* F, const T* Y, T* E, T* aux) {
  double total = 0;
  for (int s = 0; s < n; ++s) {
    const int64_t o = int64_t(s) * d;
    total += double(LossOps<kLoss>::head(F + o, Y + o, d, E + o, aux + o));
  }
  return total;
}

// out = sc · H_out R for R (n, k, d), each sample's H_out from its aux row.
template <Loss kLoss, typename T>
void hout_rows(int n, int k, int d, const T* aux, const T* R, T sc, T* out) {
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < k; ++j) {
      const int64_t o = (int64_t(s) * k + j) * d;
      LossOps<kLoss>::hout(aux + int64_t(s) * d, R + o, d, out + o);
      for (int c = 0; c < d; ++c) out[o + c] *= sc;
    }
}

}  // namespace

template <typename T>
Linearization<T>::Linearization(const MlpShape& shape, const T* theta, const T* X, const T* Y, int n,
                                bool backward)
    : s_(shape), n_(n), d_(shape.out_dim()), L_(shape.layers()), scale_(shape.mean ? T(1) / T(n) : T(1)) {
  PYHESSK_CHECK(n >= 1, "X must hold at least one sample");
  theta_.assign(theta, theta + s_.num_params);
  A_.resize(L_);
  dphi_.resize(L_ - 1);
  d2phi_.resize(L_ - 1);
  A_[0].assign(X, X + int64_t(n) * s_.sizes[0]);
  for (int l = 1; l < L_; ++l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    A_[l].resize(int64_t(n) * n_l);
    dphi_[l - 1].resize(A_[l].size());
    gemm<T>(false, true, n, n_l, n_prev, T(1), A_[l - 1].data(), n_prev, W(l), n_prev, T(0), A_[l].data(), n_l);
    PYHESSK_DISPATCH_ACT(s_.acts[l - 1], kAct, [&] {
      if constexpr (!ActOps<kAct>::kD2Zero) d2phi_[l - 1].resize(A_[l].size());
      activation_sweep<kAct>(n, n_l, b(l), A_[l].data(), dphi_[l - 1].data(),
                             d2phi_[l - 1].empty() ? nullptr : d2phi_[l - 1].data());
    });
  }
  const int n_last = s_.sizes[L_ - 1];
  F_.resize(int64_t(n) * d_);
  gemm<T>(false, true, n, d_, n_last, T(1), A_[L_ - 1].data(), n_last, W(L_), n_last, T(0), F_.data(), d_);
  add_bias(n, d_, b(L_), F_.data());
  aux_.resize(F_.size());
  E_.resize(F_.size());
  double total = 0;
  PYHESSK_DISPATCH_LOSS(s_.loss, kLoss,
                        [&] { total = loss_heads<kLoss>(n, d_, F_.data(), Y, E_.data(), aux_.data()); });
  for (auto& e : E_) e *= scale_;
  loss_ = double(scale_) * total;
  if (s_.l2 != 0) {
    double sq = 0;
    for (int l = 1; l <= L_; ++l) {
      const T* w = W(l);
      for (int64_t i = 0; i < int64_t(s_.sizes[l]) * s_.sizes[l - 1]; ++i) sq += double(w[i]) * double(w[i]);
    }
    loss_ += 0.5 * s_.l2 * sq;
  }
  if (backward) backward_locked();
}

template <typename T>
void Linearization<T>::backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  backward_locked();
}

template <typename T>
void Linearization<T>::deltas_locked() {
  if (has_deltas_) return;
  delta_.resize(L_);
  gamma_.resize(L_ - 1);
  delta_[L_ - 1] = E_;
  for (int l = L_; l > 1; --l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    auto& G = gamma_[l - 2];  // Γ_{l−1} = Δ_l W_l, then Δ_{l−1} = φ′ ⊙ Γ_{l−1}
    G.resize(int64_t(n_) * n_prev);
    gemm<T>(false, false, n_, n_prev, n_l, T(1), delta_[l - 1].data(), n_l, W(l), n_prev, T(0), G.data(), n_prev);
    auto& Dn = delta_[l - 2];
    Dn.resize(G.size());
    const T* p1 = dphi_[l - 2].data();
    for (size_t i = 0; i < G.size(); ++i) Dn[i] = p1[i] * G[i];
  }
  has_deltas_ = true;
}

template <typename T>
void Linearization<T>::backward_locked() {
  if (has_grad_) return;
  deltas_locked();
  grad_.resize(s_.num_params);
  for (int l = L_; l >= 1; --l) {  // ∇_{W_l} = Δ_lᵀ A_{l−1} (+ λ W_l), ∇_{b_l} = Σ_k Δ_l
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    const T* D = delta_[l - 1].data();
    T* gW = grad_.data() + s_.w_off[l - 1];
    gemm<T>(true, false, n_l, n_prev, n_, T(1), D, n_l, A_[l - 1].data(), n_prev, T(0), gW, n_prev);
    if (s_.l2 != 0) {
      const T lam = T(s_.l2);
      const T* w = W(l);
      for (int64_t i = 0; i < int64_t(n_l) * n_prev; ++i) gW[i] += lam * w[i];
    }
    if (s_.bias) column_sums(n_, n_l, D, grad_.data() + s_.b_off[l - 1], bias_sum_, bias_part_);
  }
  has_grad_ = true;
}

template <typename T>
void Linearization<T>::empirical_fisher_diagonal(T* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  deltas_locked();
  const T inv_s = T(1.0 / double(scale_));
  buffer<T> sq, a2;
  for (int l = 1; l <= L_; ++l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    const T* D = delta_[l - 1].data();
    const T* A = A_[l - 1].data();
    sq.resize(int64_t(n_) * n_l);
    for (int64_t i = 0; i < int64_t(n_) * n_l; ++i) sq[i] = D[i] * (D[i] * inv_s);  // s·(∂ℓ_k/∂z)²
    a2.resize(int64_t(n_) * n_prev);
    for (int64_t i = 0; i < int64_t(n_) * n_prev; ++i) a2[i] = A[i] * A[i];
    T* fW = out + s_.w_off[l - 1];
    gemm<T>(true, false, n_l, n_prev, n_, T(1), sq.data(), n_l, a2.data(), n_prev, T(0), fW, n_prev);
    if (s_.l2 != 0)
      for (int64_t i = 0; i < int64_t(n_l) * n_prev; ++i) fW[i] += T(s_.l2);
    if (s_.bias) column_sums(n_, n_l, sq.data(), out + s_.b_off[l - 1], bias_sum_, bias_part_);
  }
}

template <typename T>
void Linearization<T>::reserve(int k) {
  if (k == ws_k_) return;
  int64_t max_w = 0, max_nl = 0, units = 0;
  for (int l = 1; l <= L_; ++l) {
    max_w = std::max<int64_t>(max_w, std::max(s_.sizes[l], s_.sizes[l - 1]));
    max_nl = std::max<int64_t>(max_nl, int64_t(s_.sizes[l]) * s_.sizes[l - 1]);
    units += s_.sizes[l];
  }
  // Rows per chunk: the R-quantities of a block (RZ and RA of every layer, two ping-pong buffers) take
  // k·(2Σn_l + 2 max n_l) numbers per sample; past kChunkBudget the batch is processed in chunks of at
  // least kChunkMinRows samples, so that they stay in cache while the weight GEMMs keep a long inner
  // dimension. Products are unchanged up to the order of the sums over samples.
  // Chunks cost traffic of their own: every chunk reads and writes the k·N accumulated weight terms, so
  // chunking is kept only while that stays below a quarter of the R-quantities' own traffic (it pays on
  // long batches of narrow layers, P; on M, W and D it made blocks slower).
  const int64_t per_sample = int64_t(k) * (2 * units + 2 * max_w);
  int rows = n_;
  if (k > 1 && int64_t(n_) * per_sample > kChunkBudget)  // one direction: more BLAS calls, no cache to win
    rows = int(std::min<int64_t>(n_, std::max<int64_t>(kChunkMinRows, kChunkBudget / per_sample)));
  const int64_t chunks = (n_ + rows - 1) / rows;
  if (4 * chunks * int64_t(k) * s_.num_params > int64_t(n_) * per_sample) rows = n_;
  chunk_ = rows;
  RZ_.resize(L_);
  RA_.resize(L_ - 1);
  for (int l = 1; l <= L_; ++l) RZ_[l - 1].resize(int64_t(rows) * k * s_.sizes[l]);
  for (int l = 1; l < L_; ++l) RA_[l - 1].resize(int64_t(rows) * k * s_.sizes[l]);
  buf_a_.resize(int64_t(rows) * k * max_w);
  buf_b_.resize(buf_a_.size());
  const int64_t blk = std::max<int64_t>(int64_t(k) * max_nl, int64_t(k) * max_w);
  const bool chunked = rows < n_;
  // Chunked products pack V once for all chunks and accumulate every layer's blocks over the chunks.
  pack_a_.resize(chunked && k > 1 ? int64_t(k) * s_.num_params : blk);
  pack_b_.resize(pack_a_.size());
  hw_.resize(chunked ? int64_t(k) * s_.num_params : blk);
  t2_.resize(hw_.size());
  vb_.resize(int64_t(k) * max_w);
  ws_k_ = k;
}

template <typename T>
void Linearization<T>::pack_rows(const T* V, int k, int l, T* buf) const {
  // buf (k, n_l·n_{l−1}) = V_lᵀ for V_l (n_l·n_{l−1}, k)
  const int64_t w0 = s_.w_off[l - 1];
  transpose<T>(int64_t(s_.sizes[l]) * s_.sizes[l - 1], k, V + w0 * k, buf);
}

template <typename T>
void Linearization<T>::pack_cols(const T* V, int k, int l, T* buf) const {
  // buf (n_l, k, n_{l−1}): per unit r, V_l[r] (n_{l−1}, k) transposed
  const int64_t w0 = s_.w_off[l - 1];
  const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
  for (int r = 0; r < n_l; ++r)
    transpose<T>(n_prev, k, V + (w0 + int64_t(r) * n_prev) * k, buf + int64_t(r) * k * n_prev);
}

template <typename T>
void Linearization<T>::pack(const T* V, int k, bool cols) {
  // chunked and k > 1: every layer packed once, at k·w_off, for all chunks
  if (k == 1 || chunk_ == n_) return;
  for (int l = 1; l <= L_; ++l) {
    const int64_t at = int64_t(k) * s_.w_off[l - 1];
    pack_rows(V, k, l, pack_a_.data() + at);
    if (cols) pack_cols(V, k, l, pack_b_.data() + at);
  }
}

template <typename T>
const T* Linearization<T>::packed(const T* V, int k, int l, bool cols) {
  if (k == 1) return V + s_.w_off[l - 1];
  if (chunk_ < n_) return (cols ? pack_b_ : pack_a_).data() + int64_t(k) * s_.w_off[l - 1];
  cols ? pack_cols(V, k, l, pack_b_.data()) : pack_rows(V, k, l, pack_a_.data());
  return (cols ? pack_b_ : pack_a_).data();
}

template <typename T>
void Linearization<T>::r_forward(const T* V, int k, int s0, int rows) {
  for (int l = 1; l <= L_; ++l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    T* RZ = RZ_[l - 1].data();
    // A_{l−1} [V_l^(1); …; V_l^(k)]ᵀ: one GEMM (rows × n_{l−1}) · (n_{l−1} × k·n_l)
    const T* P = packed(V, k, l, false);
    gemm<T>(false, true, rows, k * n_l, n_prev, T(1), A_[l - 1].data() + int64_t(s0) * n_prev, n_prev, P, n_prev,
            T(0), RZ, k * n_l);
    if (l > 1)  // + W_l R{A_{l−1}}: one GEMM over rows·k rows
      gemm<T>(false, true, rows * k, n_l, n_prev, T(1), RA_[l - 2].data(), n_prev, W(l), n_prev, T(1), RZ, n_l);
    T* vb = vb_.data();  // v_l^(j)[r] packed as (k, n_l)
    if (s_.bias) transpose<T>(n_l, k, V + s_.b_off[l - 1] * k, vb);
    const bool hidden = l < L_;
    rforward_sweep(rows, k, n_l, s_.bias ? vb : nullptr, hidden ? dphi_[l - 1].data() + int64_t(s0) * n_l : nullptr,
                   RZ, hidden ? RA_[l - 1].data() : nullptr);
  }
}

template <typename T>
void Linearization<T>::output_hessian(const T* R, int k, T* out) const {
  PYHESSK_DISPATCH_LOSS(s_.loss, kLoss,
                        [&] { hout_rows<kLoss>(n_, k, d_, aux_.data(), R, scale_, out); });
}

template <typename T>
void Linearization<T>::output_hessian_rows(const T* R, int k, int s0, int rows, T* out) const {
  PYHESSK_DISPATCH_LOSS(s_.loss, kLoss,
                        [&] { hout_rows<kLoss>(rows, k, d_, aux_.data() + int64_t(s0) * d_, R, scale_, out); });
}

template <typename T>
void Linearization<T>::accumulate_layer(int l, int k, int s0, int rows, const T* D, const T* RA, T* out) {
  // Rows [s0, s0 + rows) of: W block Dᵀ A_{l−1} (+ Δ_lᵀ R{A_{l−1}} when RA is given), bias Σ_s D. For k = 1
  // they go straight into out; otherwise into hw (k, n_l, n_{l−1}) and t2 (n_l, k, n_{l−1}): per layer when
  // the batch is one chunk, at k·offsets for all layers when it is chunked.
  const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
  const bool chunked = chunk_ < n_;
  const T beta = s0 == 0 ? T(0) : T(1);
  const T* A = A_[l - 1].data() + int64_t(s0) * n_prev;
  const T* Dl = delta_.empty() ? nullptr : delta_[l - 1].data() + int64_t(s0) * n_l;
  T* bias = nullptr;
  if (k == 1) {
    T* HW = out + s_.w_off[l - 1];
    gemm<T>(true, false, n_l, n_prev, rows, T(1), D, n_l, A, n_prev, beta, HW, n_prev);
    if (RA) gemm<T>(true, false, n_l, n_prev, rows, T(1), Dl, n_l, RA, n_prev, T(1), HW, n_prev);
    bias = s_.bias ? out + s_.b_off[l - 1] : nullptr;
  } else {
    T* hw = chunked ? hw_.data() + int64_t(k) * s_.w_off[l - 1] : hw_.data();
    T* t2 = chunked ? t2_.data() + int64_t(k) * s_.w_off[l - 1] : t2_.data();
    gemm<T>(true, false, k * n_l, n_prev, rows, T(1), D, k * n_l, A, n_prev, beta, hw, n_prev);
    if (RA) gemm<T>(true, false, n_l, k * n_prev, rows, T(1), Dl, n_l, RA, k * n_prev, beta, t2, k * n_prev);
    bias = s_.bias ? (chunked ? hw_.data() + int64_t(k) * s_.b_off[l - 1] : vb_.data()) : nullptr;  // (k, n_l)
  }
  if (bias) column_sums(rows, k * n_l, D, bias, bias_sum_, bias_part_, s0 > 0);  // chunks add to the earlier ones
}

template <typename T>
void Linearization<T>::finish_layer(int l, int k, bool with_ra, const T* V, T* out) {
  // out's blocks of layer l from the accumulated terms, + λ V_l when V is given
  const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
  const int64_t w0 = s_.w_off[l - 1], nl = int64_t(n_l) * n_prev;
  const T lam = T(s_.l2);
  const bool reg = V && lam != T(0);
  if (k == 1) {
    if (reg)
      for (int64_t i = 0; i < nl; ++i) out[w0 + i] += lam * V[w0 + i];
    return;
  }
  const bool chunked = chunk_ < n_;
  const T* hw = chunked ? hw_.data() + int64_t(k) * w0 : hw_.data();
  const T* t2 = chunked ? t2_.data() + int64_t(k) * w0 : t2_.data();
  T* dst = out + w0 * k;  // (n_l·n_{l−1}, k)
  transpose<T>(k, nl, hw, dst);  // hw (k, n_l·n_{l−1})
  if (with_ra)  // t2 (n_l, k, n_{l−1}): per unit a (k, n_{l−1}) block
    for (int r = 0; r < n_l; ++r)
      transpose<T, true>(k, n_prev, t2 + int64_t(r) * k * n_prev, dst + int64_t(r) * n_prev * k);
  if (reg)
    for (int64_t i = 0; i < nl * k; ++i) dst[i] += lam * V[w0 * k + i];
  if (s_.bias) {
    const T* bsum = chunked ? hw_.data() + int64_t(k) * s_.b_off[l - 1] : vb_.data();  // (k, n_l)
    transpose<T>(k, n_l, bsum, out + s_.b_off[l - 1] * k);
  }
}

template <typename T>
void Linearization<T>::hvp(const T* V, int k, T* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  deltas_locked();
  reserve(k);
  pack(V, k, true);
  const bool chunked = chunk_ < n_;
  for (int s0 = 0; s0 < n_; s0 += chunk_) {
    const int rows = std::min(chunk_, n_ - s0);
    r_forward(V, k, s0, rows);
    T* RD = buf_a_.data();
    T* RG = buf_b_.data();
    output_hessian_rows(RZ_[L_ - 1].data(), k, s0, rows, RD);  // R{Δ_L}
    for (int l = L_; l >= 1; --l) {
      const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
      accumulate_layer(l, k, s0, rows, RD, l > 1 ? RA_[l - 2].data() : nullptr, out);
      if (!chunked) finish_layer(l, k, l > 1, V, out);
      if (l == 1) break;
      // R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l: two GEMMs; then R{Δ_{l−1}} = φ′ R{Γ} + φ″ Γ R{Z} in one sweep
      const T* P = packed(V, k, l, true);
      gemm<T>(false, false, rows, k * n_prev, n_l, T(1), delta_[l - 1].data() + int64_t(s0) * n_l, n_l, P,
              k * n_prev, T(0), RG, k * n_prev);
      gemm<T>(false, false, rows * k, n_prev, n_l, T(1), RD, n_l, W(l), n_prev, T(1), RG, n_prev);
      const int64_t o = int64_t(s0) * n_prev;
      rbackward_sweep(rows, k, n_prev, dphi_[l - 2].data() + o, d2phi_[l - 2].empty() ? nullptr : d2phi_[l - 2].data() + o,
                      gamma_[l - 2].data() + o, RZ_[l - 2].data(), RG);
      std::swap(RD, RG);
    }
  }
  if (chunked)
    for (int l = 1; l <= L_; ++l) finish_layer(l, k, l > 1, V, out);
}

template <typename T>
void Linearization<T>::gn_backward(const T* U, int k, int s0, int rows, const T* V, T* out) {
  // rows [s0, s0 + rows) of U (rows, k, d); finishes the layers itself when the batch is one chunk
  const T* D = U;
  T* next = (U == buf_a_.data()) ? buf_b_.data() : buf_a_.data();
  const bool chunked = chunk_ < n_;
  for (int l = L_; l >= 1; --l) {
    const int n_l = s_.sizes[l], n_prev = s_.sizes[l - 1];
    accumulate_layer(l, k, s0, rows, D, nullptr, out);
    if (!chunked) finish_layer(l, k, false, V, out);
    if (l == 1) break;
    gemm<T>(false, false, rows * k, n_prev, n_l, T(1), D, n_l, W(l), n_prev, T(0), next, n_prev);
    scale_rows(rows, k, n_prev, dphi_[l - 2].data() + int64_t(s0) * n_prev, next);
    D = next;
    next = (next == buf_a_.data()) ? buf_b_.data() : buf_a_.data();
  }
}

template <typename T>
void Linearization<T>::gnvp(const T* V, int k, T* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  reserve(k);
  pack(V, k, false);
  for (int s0 = 0; s0 < n_; s0 += chunk_) {
    const int rows = std::min(chunk_, n_ - s0);
    r_forward(V, k, s0, rows);
    output_hessian_rows(RZ_[L_ - 1].data(), k, s0, rows, buf_a_.data());
    gn_backward(buf_a_.data(), k, s0, rows, V, out);
  }
  if (chunk_ < n_)
    for (int l = 1; l <= L_; ++l) finish_layer(l, k, false, V, out);
}

template <typename T>
void Linearization<T>::jvp(const T* V, int k, T* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  reserve(k);
  pack(V, k, false);
  for (int s0 = 0; s0 < n_; s0 += chunk_) {
    const int rows = std::min(chunk_, n_ - s0);
    r_forward(V, k, s0, rows);
    std::memcpy(out + int64_t(s0) * k * d_, RZ_[L_ - 1].data(), sizeof(T) * size_t(rows) * k * d_);
  }
}

template <typename T>
void Linearization<T>::vjp(const T* U, int k, T* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  reserve(k);
  for (int s0 = 0; s0 < n_; s0 += chunk_) {
    const int rows = std::min(chunk_, n_ - s0);
    gn_backward(U + int64_t(s0) * k * d_, k, s0, rows, nullptr, out);
  }
  if (chunk_ < n_)
    for (int l = 1; l <= L_; ++l) finish_layer(l, k, false, nullptr, out);
}

template <typename T>
void forward(const MlpShape& s, const T* theta, const T* X, int n, T* out) {
  const int L = s.layers();
  std::vector<T> a(X, X + int64_t(n) * s.sizes[0]), z;
  for (int l = 1; l <= L; ++l) {
    const int n_l = s.sizes[l], n_prev = s.sizes[l - 1];
    const T* W = theta + s.w_off[l - 1];
    const T* b = s.bias ? theta + s.b_off[l - 1] : nullptr;
    T* dst = l == L ? out : (z.resize(int64_t(n) * n_l), z.data());
    gemm<T>(false, true, n, n_l, n_prev, T(1), a.data(), n_prev, W, n_prev, T(0), dst, n_l);
    if (l == L) {
      add_bias(n, n_l, b, dst);
    } else {
      PYHESSK_DISPATCH_ACT(s.acts[l - 1], kAct, [&] { activation_only<kAct>(n, n_l, b, dst); });
      a.swap(z);
    }
  }
}

template class Linearization<float>;
template class Linearization<double>;
template void forward<float>(const MlpShape&, const float*, const float*, int, float*);
template void forward<double>(const MlpShape&, const double*, const double*, int, double*);

}  // namespace pyhessk::cpu
