// Entrywise Gauss–Newton evaluation (SPEC §3) on the CPU. The precomputation stores, unit-major so that a
// parameter's factor is contiguous, and sample-fastest so that every sweep vectorizes over the samples:
//   S_l (n_l, d, n):  S_l[i, :, k] = S_{l,k}[:, i] = (C_kᵀ ∂f_k/∂z_l)[:, i]   (one GEMM per layer)
//   AT_l (n_{l−1}, n): the activations a_{l−1,k}, transposed
//   nu_l (n_l, n):    ν_{l,k,i} = ‖S_{l,k}[:, i]‖
// so that G[p, q] = s Σ_k a_p[k] a_q[k] ⟨S_l[i, :, k], S_l'[i', :, k]⟩ (+ λ on the weight diagonal), with
// p = (l, i, j) and a_p[k] = a_{l−1,k}[j] (1 for a bias).
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "common/views.h"
#include "cpu/pool.h"
#include "cpu/linearization_cpu.h"

namespace pyhessk::cpu {

template <typename scalar_t>
class GnhFactors {
 public:
  // Reads `lin` and keeps a pointer to it for gnvp's carried route: `lin` must outlive the factors.
  explicit GnhFactors(const Linearization<scalar_t>& lin);

  int64_t num_params() const { return s_.num_params; }
  int n() const { return n_; }
  int d() const { return d_; }
  const MlpShape& shape() const { return s_; }
  // The stored factors of layer l = 1..L: S_l (n_l, d, n) and A_{l−1}ᵀ (n_{l−1}, n).
  const scalar_t* S_layer(int l) const { return S_[l - 1].data(); }
  const scalar_t* AT_layer(int l) const { return AT_[l - 1].data(); }
  // Exact entries G[rows[t], cols[t]] → out (m,): O(n·d) each.
  void entries(const int64_t* rows, const int64_t* cols, int64_t m, scalar_t* out) const;
  // Exact block G[I × J] → out (|I|, |J|): the factors of I and J gathered, then one GEMM.
  void block(const int64_t* I, int64_t mi, const int64_t* J, int64_t mj, scalar_t* out) const;
  // Exact columns G[:, J] → out (N, m): a batched contraction with S and one GEMM per layer and column.
  void columns(const int64_t* J, int64_t m, scalar_t* out) const;
  // Exact diagonal → out (N,): from the norms only, O(n) per entry.
  void diagonal(scalar_t* out) const;
  // G V for a block V (N, k) → out (N, k), from the factors alone (no forward or backward pass): per layer
  // one GEMM P_l = A_{l−1} V_lᵀ and its contraction with S_l into u (n, k, d); then per layer the
  // transposed contraction Q_l = S_l u and one GEMM Q_lᵀ A_{l−1}. Includes λ P_W V. `carry` (L flags, or
  // null for none) marks hidden layers l whose R-values go on through W_{l+1} instead of meeting S_l (one
  // GEMM each way instead of two passes over S_l: the cheaper route when layer l + 1 is narrow).
  void gnvp(const scalar_t* V, int k, scalar_t* out, const uint8_t* carry = nullptr);
  // Importance-sampled estimates (π_k ∝ ‖x_k‖‖y_k‖): `groups` independent means of s draws each per entry
  // → out (groups, m), entry t's distribution built once for all groups. Entry t draws from its own
  // stream derived from (seed, t), so results do not depend on threads. A draw reads the d factor values
  // of one sample: the first call makes a sample-major copy of S (as much memory again), so that they
  // are one cache line instead of d.
  void sample(const int64_t* rows, const int64_t* cols, int64_t m, int64_t s, uint64_t seed, scalar_t* out,
              int64_t groups = 1) const;

 private:
  struct Index {
    int layer;  // 1..L
    int row;    // unit i of layer l
    int col;    // input j of layer l, or −1 for the bias
  };
  Index decode(int64_t p) const;
  // a_p over the samples (n,): the activations A_{l−1}[:, col], or null for a bias (a = 1)
  const scalar_t* act(const Index& x) const {
    return x.col < 0 ? nullptr : AT_[x.layer - 1].data() + int64_t(x.col) * n_;
  }
  const scalar_t* S(const Index& x) const { return S_[x.layer - 1].data() + int64_t(x.row) * d_ * n_; }
  void gather(const Index& x, scalar_t* out) const;  // x_k = a_p[k] S_l[i, :, k] for all k: (d, n)
  scalar_t l2_term(int64_t p, int64_t q) const;

  void sample_major() const;  // fills Sk_ once

  MlpShape s_;
  int n_, d_, L_;
  scalar_t scale_;
  std::vector<buffer<scalar_t>> S_, AT_, nu_;
  // The carried route of gnvp reads W_{l+1} and φ′_l from the linearization, which must outlive the factors
  // (the binding keeps it alive), and keeps φ′_lᵀ (n_l, n) of the layers it has carried, transposed on first
  // use: no memory for a route that never carries.
  const Linearization<scalar_t>* lin_;
  std::vector<buffer<scalar_t>> dT_;
  const scalar_t* dphiT(int l);  // φ′_lᵀ, under mutex_
  // S_l sample-major, (n_l, n, d): Sk_l[i, k, :] = S_l[i, :, k]; made by the first sample() call
  mutable std::once_flag sk_once_;
  mutable std::vector<buffer<scalar_t>> Sk_;

  // Workspace of gnvp, sized for the largest k seen and reused; the mutex serialises products.
  std::mutex mutex_;
  buffer<scalar_t> u_, P_, R_, pack_, hw_;
};

extern template class GnhFactors<float>;
extern template class GnhFactors<double>;

}  // namespace pyhessk::cpu
