// The C++ CPU engine's linearization: one fused forward (+ backward) pass over a batch, its caches, and
// the products that reuse them. Arrays are row-major, batch-major (one sample per row), as in SPEC §1.
// A block of k directions V is (N, k); its R-quantities are kept as (n, k, n_l), so every product with
// W_l is one GEMM over n·k rows and every product with the direction weights one GEMM with k·n_l columns.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "common/config.h"
#include "common/views.h"
#include "cpu/pool.h"

namespace pyhessk::cpu {

template <typename scalar_t>
class Linearization {
 public:
  // theta (N,), X (n, n0), Y (n, d) canonical targets; copies θ and X (the snapshot owns its data).
  Linearization(const MlpShape& shape, const scalar_t* theta, const scalar_t* X, const scalar_t* Y, int n,
                bool backward);

  void backward();  // the gradient pass; no-op once done
  bool has_grad() const { return has_grad_; }
  double loss() const { return loss_; }
  const MlpShape& shape() const { return s_; }
  int n() const { return n_; }
  int d() const { return d_; }
  double scale() const { return double(scale_); }

  // Products on a block of k directions. V, out: (N, k); U: (n, k, d); R, jvp out: (n, k, d).
  void hvp(const scalar_t* V, int k, scalar_t* out);
  void gnvp(const scalar_t* V, int k, scalar_t* out);
  void jvp(const scalar_t* V, int k, scalar_t* out);
  void vjp(const scalar_t* U, int k, scalar_t* out);
  void output_hessian(const scalar_t* R, int k, scalar_t* out) const;  // s·H_out·R per sample
  // The dense H (hessian) or G into out (N, N), assembled from per-sample second-order terms (dense_cpu.cpp),
  // chunk samples at a time (≤ 0: as many as a fixed memory budget allows).
  void dense(bool hessian, scalar_t* out, int chunk = 0);
  // s·Σ_k ∇ℓ_k ⊙ ∇ℓ_k + λ on the weights into out (N,): per layer one GEMM (Δ_l ⊙ Δ_l)ᵀ (A_{l−1} ⊙ A_{l−1}) / s
  // and the column sums of Δ_l ⊙ Δ_l / s for the biases (Δ_l = s·∂ℓ_k/∂z_l per sample, from the backward pass).
  void empirical_fisher_diagonal(scalar_t* out);

  // The caches, for the GNH precomputation and for inspection (valid while this object lives).
  const scalar_t* theta() const { return theta_.data(); }
  const scalar_t* W(int l) const { return theta_.data() + s_.w_off[l - 1]; }  // W_l, l = 1..L: (n_l, n_{l−1})
  const scalar_t* grad() const { return grad_.data(); }
  const scalar_t* act(int l) const { return A_[l].data(); }       // A_l, l = 0..L−1: (n, n_l)
  const scalar_t* dphi(int l) const { return dphi_[l - 1].data(); }  // φ′_l, l = 1..L−1: (n, n_l)
  const scalar_t* output() const { return F_.data(); }            // f: (n, d)
  const scalar_t* aux() const { return aux_.data(); }             // the loss head's H_out data: (n, d)

 private:
  const scalar_t* b(int l) const { return s_.bias ? theta_.data() + s_.b_off[l - 1] : nullptr; }
  void backward_locked();
  void deltas_locked();  // Δ_l and Γ_l only: what the Hessian product needs (no weight-gradient GEMMs)
  void reserve(int k);  // workspace and the rows per chunk (chunk_) for blocks of k
  void pack(const scalar_t* V, int k, bool cols);  // chunked blocks: every layer of V packed once
  const scalar_t* packed(const scalar_t* V, int k, int l, bool cols);  // rows (k, n_l, n_{l−1}) / cols (n_l, k, n_{l−1})
  void pack_rows(const scalar_t* V, int k, int l, scalar_t* buf) const;
  void pack_cols(const scalar_t* V, int k, int l, scalar_t* buf) const;
  void r_forward(const scalar_t* V, int k, int s0, int rows);  // RZ_[l], RA_[l] for samples [s0, s0 + rows)
  void output_hessian_rows(const scalar_t* R, int k, int s0, int rows, scalar_t* out) const;
  // layer l's weight and bias terms from samples [s0, s0 + rows), accumulated over chunks; then out's blocks
  void accumulate_layer(int l, int k, int s0, int rows, const scalar_t* D, const scalar_t* RA, scalar_t* out);
  void finish_layer(int l, int k, bool with_ra, const scalar_t* V, scalar_t* out);
  void gn_backward(const scalar_t* U, int k, int s0, int rows, const scalar_t* V, scalar_t* out);

  MlpShape s_;
  int n_, d_, L_;
  scalar_t scale_;
  double loss_ = 0;
  bool has_grad_ = false, has_deltas_ = false;
  buffer<scalar_t> theta_, grad_;
  std::vector<buffer<scalar_t>> A_;      // A_0 = X, …, A_{L−1}
  std::vector<buffer<scalar_t>> dphi_;   // l = 1..L−1
  std::vector<buffer<scalar_t>> d2phi_;  // empty where φ″ ≡ 0
  buffer<scalar_t> F_, aux_, E_;         // output, loss-head data, s·∂ℓ/∂f
  std::vector<buffer<scalar_t>> delta_;  // Δ_l, l = 1..L (Δ_L = E)
  std::vector<buffer<scalar_t>> gamma_;  // Γ_l, l = 1..L−1

  // Workspace owned by the linearization: sized for the last k seen, reused by every product.
  std::mutex mutex_;
  int ws_k_ = 0, chunk_ = 0;
  std::vector<buffer<scalar_t>> RZ_, RA_;  // (rows, k, n_l) for one chunk of samples
  buffer<scalar_t> buf_a_, buf_b_;         // R{Δ}/R{Γ} ping-pong: rows·k·max n_l
  buffer<scalar_t> pack_a_, pack_b_;       // packed direction blocks: one layer, or all when chunked
  buffer<scalar_t> hw_, t2_;               // weight terms: one layer, or all layers when chunked
  buffer<scalar_t> vb_;                    // bias directions, or bias sums of an unchunked layer: k·max n_l
  std::vector<acc_t<scalar_t>> bias_sum_;  // a bias sum over samples in progress
  std::vector<scalar_t> bias_part_;        // and its partial sum over one block of samples
};

// The network output f = f(X; θ) into out (n, d): one GEMM and one φ sweep per layer, no derivatives.
template <typename scalar_t>
void forward(const MlpShape& shape, const scalar_t* theta, const scalar_t* X, int n, scalar_t* out);

extern template class Linearization<float>;
extern template class Linearization<double>;

}  // namespace pyhessk::cpu
