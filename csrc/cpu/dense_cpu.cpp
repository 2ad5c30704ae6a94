// The dense Hessian and Gauss–Newton matrix of the C++ CPU engine, assembled from per-sample second-order
// terms; the algorithm and its notation are those of pyhessk/backends/numpy/dense.py (the reference).
//
// Per chunk of samples, every per-sample matrix is kept "sample in the middle", (rows, n_c, cols), so that
// each recursion step is one flat GEMM over all samples of the chunk:
//   S_l  (n_l, n_c, n_l)  = ∂²L/∂z_l²:   S_l = D_l W_{l+1}ᵀ S_{l+1} W_{l+1} D_l + diag(Γ_l ⊙ φ″_l)  (2 GEMMs)
//   K_lm (n_l, n_c, n_m)  = S_l ∂z_l/∂z_m: K_lm = K_l,m+1 W_{m+1} D_m                          (1 GEMM)
//   dA_jm (n_j, n_c, n_m) = ∂a_j/∂z_m:    dA_jm = D_j W_j dA_j−1,m                            (1 GEMM)
// Then block (l, m ≤ l) of H, unit u of layer l at a time: Y[k, v, w] = K_lm[u, k, w] ã_{l−1}[k, v]
// + Δ_l[k, u] dA_{l−1,m}[v, k, w] (one sweep), and one GEMM Yᵀ ã_{m−1} over the chunk's samples, added
// into H's rows of (u, v) at the columns of (w, x); diagonal blocks only for units w ≤ u. The other half of
// each diagonal block and the blocks above the diagonal are mirrored at the end.
#include <algorithm>
#include <cstring>

#include "cpu/clones.h"
#include "cpu/gemm_cpu.h"
#include "cpu/linearization_cpu.h"
#include "cpu/sweeps.h"

namespace pyhessk::cpu {
namespace {

// Numbers of per-sample work arrays a chunk of samples may hold.
constexpr int64_t kDenseBudget = int64_t(1) << 21;

// S (m, nc, m) ⊙= φ′[k, u] φ′[k, w], then S[u, k, u] += c[k, u] (c null: no diagonal term).
template <typename T>
PYHESSK_CPU_CLONES void scale_two_sided(int m, int nc, const T* d1, const T* c, T* S) {
  for (int u = 0; u < m; ++u)
    for (int k = 0; k < nc; ++k) {
      T* row = S + (int64_t(u) * nc + k) * m;
      const T* p = d1 + int64_t(k) * m;
      const T pu = p[u];
      for (int w = 0; w < m; ++w) row[w] *= pu * p[w];
      if (c) row[u] += c[int64_t(k) * m + u];
    }
}

// X (r, nc, m): X[v, k, :] ⊙= φ′[k, v], φ′ (nc, r).
template <typename T>
void scale_rows_by(int r, int nc, int m, const T* d1, T* X) {
  for (int v = 0; v < r; ++v)
    for (int k = 0; k < nc; ++k) {
      T* row = X + (int64_t(v) * nc + k) * m;
      const T s = d1[int64_t(k) * r + v];
      for (int w = 0; w < m; ++w) row[w] *= s;
    }
}

// Y (nc, na, m) for one unit u: Y[k, v, :] = a[k, v] K[k, :] + (v < nv ? g[k] B[v, k, :] : 0), where K is
// (nc, m) with row stride ldk, a (nc, na), g (nc) with stride ldg (null: no Δ term), B (nv, nc, m); a
// diagonal B (diag non-null, B null) adds g[k] diag[k, v] at w = v instead.
template <typename T>
PYHESSK_CPU_CLONES void build_y(int nc, int na, int m, const T* K, int64_t ldk, const T* a, const T* g, int64_t ldg,
                                const T* B, int nv, const T* diag, T* Y) {
  for (int k = 0; k < nc; ++k) {
    const T* kr = K + int64_t(k) * ldk;
    const T* ar = a + int64_t(k) * na;
    const T gk = g ? g[int64_t(k) * ldg] : T(0);
    for (int v = 0; v < na; ++v) {
      T* y = Y + (int64_t(k) * na + v) * m;
      const T av = ar[v];
      if (g && B && v < nv) {
        const T* b = B + (int64_t(v) * nc + k) * m;
        for (int w = 0; w < m; ++w) y[w] = av * kr[w] + gk * b[w];
      } else {
        for (int w = 0; w < m; ++w) y[w] = av * kr[w];
        if (g && diag && v < nv) y[v] += gk * diag[int64_t(k) * nv + v];
      }
    }
  }
}

}  // namespace

template <typename T>
void Linearization<T>::dense(bool hessian, T* H, int chunk) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (hessian) deltas_locked();
  const auto& sz = s_.sizes;
  const int L = L_, n = n_, d = d_, bias = s_.bias ? 1 : 0;
  const int64_t N = s_.num_params;
  std::fill(H, H + N * N, T(0));
  auto aug = [&](int l) { return sz[l] + bias; };  // ñ_l

  // per-sample numbers of one chunk: S_l, dA_jm, two K's, the S recursion's scratch, Y, ã
  int64_t per = int64_t(d) * d, kmax = 0, ymax = 0, cmax = 0, xmax = 0;
  for (int l = 1; l < L; ++l) per += int64_t(sz[l]) * sz[l];
  if (hessian)
    for (int m = 1; m < L; ++m)
      for (int j = m + 1; j < L; ++j) per += int64_t(sz[j]) * sz[m];
  for (int l = 1; l <= L; ++l) {
    per += aug(l - 1);
    if (l < L) xmax = std::max(xmax, int64_t(sz[l + 1]) * sz[l]);
    for (int m = 1; m <= l; ++m) {
      kmax = std::max(kmax, int64_t(sz[l]) * sz[m]);
      ymax = std::max(ymax, int64_t(aug(l - 1)) * sz[m]);
      cmax = std::max(cmax, int64_t(aug(l - 1)) * sz[m] * aug(m - 1));
    }
  }
  per += 2 * kmax + xmax + ymax + int64_t(d) * d;
  const int nc = int(std::max<int64_t>(1, std::min<int64_t>(n, chunk > 0 ? chunk : kDenseBudget / per)));

  std::vector<buffer<T>> S(L + 1), At(L);
  std::vector<std::vector<buffer<T>>> dA(L);  // dA[m][j], m < j ≤ L − 1
  buffer<T> X(xmax * nc), Ka(kmax * nc), Kb(kmax * nc), Y(ymax * nc), C(cmax), R(int64_t(d) * d * nc);

  for (int s0 = 0; s0 < n; s0 += nc) {
    const int rows = std::min(nc, n - s0);
    // ã_{l−1} = [A_{l−1}, 1] for the chunk
    for (int l = 0; l < L; ++l) {
      At[l].resize(int64_t(rows) * aug(l));
      for (int k = 0; k < rows; ++k) {
        T* dst = At[l].data() + int64_t(k) * aug(l);
        std::memcpy(dst, A_[l].data() + int64_t(s0 + k) * sz[l], sizeof(T) * sz[l]);
        if (bias) dst[sz[l]] = T(1);
      }
    }
    // S_L = s·H_out: H_out applied to the d unit vectors of each sample, stored (d, nc, d)
    std::fill(R.begin(), R.end(), T(0));
    for (int k = 0; k < rows; ++k)
      for (int c = 0; c < d; ++c) R[(int64_t(k) * d + c) * d + c] = T(1);
    S[L].resize(int64_t(d) * rows * d);
    X.resize(std::max<int64_t>(X.size(), int64_t(d) * d * rows));
    output_hessian_rows(R.data(), d, s0, rows, X.data());
    for (int u = 0; u < d; ++u)
      for (int k = 0; k < rows; ++k)
        std::memcpy(S[L].data() + (int64_t(u) * rows + k) * d, X.data() + (int64_t(k) * d + u) * d, sizeof(T) * d);
    // S_l, l = L − 1..1: X = S_{l+1} W_{l+1} as (n_{l+1}, nc, n_l), then S_l = W_{l+1}ᵀ X
    for (int l = L - 1; l >= 1; --l) {
      const int a = sz[l + 1], b = sz[l];
      S[l].resize(int64_t(b) * rows * b);
      gemm<T>(false, false, a * rows, b, a, T(1), S[l + 1].data(), a, W(l + 1), b, T(0), X.data(), b);
      gemm<T>(true, false, b, rows * b, a, T(1), W(l + 1), b, X.data(), rows * b, T(0), S[l].data(), rows * b);
      const T* d1 = dphi_[l - 1].data() + int64_t(s0) * b;
      const T* c = nullptr;
      if (hessian && !d2phi_[l - 1].empty()) {  // Γ_l ⊙ φ″_l, into X (free again)
        const T* g = gamma_[l - 1].data() + int64_t(s0) * b;
        const T* d2 = d2phi_[l - 1].data() + int64_t(s0) * b;
        for (int64_t i = 0; i < int64_t(rows) * b; ++i) X[i] = g[i] * d2[i];
        c = X.data();
      }
      scale_two_sided(b, rows, d1, c, S[l].data());
    }
    // dA_jm = ∂a_j/∂z_m for m < j ≤ L − 1 (H only); dA_mm = D_m is applied as a diagonal
    if (hessian)
      for (int m = 1; m < L; ++m) {
        dA[m].resize(L);
        for (int j = m + 1; j < L; ++j) {
          auto& cur = dA[m][j];
          cur.resize(int64_t(sz[j]) * rows * sz[m]);
          if (j == m + 1) {  // D_{m+1} W_{m+1} D_m
            const T* Wm = W(m + 1);
            for (int v = 0; v < sz[j]; ++v)
              for (int k = 0; k < rows; ++k) {
                T* row = cur.data() + (int64_t(v) * rows + k) * sz[m];
                const T* p = dphi_[m - 1].data() + int64_t(s0 + k) * sz[m];
                for (int w = 0; w < sz[m]; ++w) row[w] = Wm[int64_t(v) * sz[m] + w] * p[w];
              }
          } else {
            gemm<T>(false, false, sz[j], rows * sz[m], sz[j - 1], T(1), W(j), sz[j - 1], dA[m][j - 1].data(),
                    rows * sz[m], T(0), cur.data(), rows * sz[m]);
          }
          scale_rows_by(sz[j], rows, sz[m], dphi_[j - 1].data() + int64_t(s0) * sz[j], cur.data());
        }
      }
    // blocks (l, m ≤ l)
    for (int l = 1; l <= L; ++l) {
      const T* K = S[l].data();
      for (int m = l; m >= 1; --m) {
        if (m < l) {  // K_lm = K_l,m+1 W_{m+1} D_m
          T* Kn = (K == Ka.data()) ? Kb.data() : Ka.data();
          gemm<T>(false, false, sz[l] * rows, sz[m], sz[m + 1], T(1), K, sz[m + 1], W(m + 1), sz[m], T(0), Kn, sz[m]);
          for (int u = 0; u < sz[l]; ++u)  // ⊙ φ′_m[k, w] in each of the n_l slices (nc, n_m)
            scale_rows(rows, 1, sz[m], dphi_[m - 1].data() + int64_t(s0) * sz[m], Kn + int64_t(u) * rows * sz[m]);
          K = Kn;
        }
        const int na = aug(l - 1), nb = aug(m - 1), nm = sz[m], np = sz[l - 1];
        const bool cross = hessian && m < l;
        const T* B = cross && m < l - 1 ? dA[m][l - 1].data() : nullptr;
        const T* diag = cross && m == l - 1 ? dphi_[m - 1].data() + int64_t(s0) * nm : nullptr;
        for (int u = 0; u < sz[l]; ++u) {
          // diagonal blocks are symmetric: units w ≤ u only, the rest mirrored at the end
          const int nw = m == l ? u + 1 : nm;
          const int64_t M = int64_t(na) * nw;
          const T* g = cross ? delta_[l - 1].data() + int64_t(s0) * sz[l] + u : nullptr;
          build_y(rows, na, nw, K + int64_t(u) * rows * nm, nm, At[l - 1].data(), g, sz[l], B, np, diag, Y.data());
          gemm<T>(true, false, int(M), nb, rows, T(1), Y.data(), int(M), At[m - 1].data(), nb, T(0), C.data(), nb);
          for (int v = 0; v < na; ++v) {
            const int64_t r = v < np ? s_.w_off[l - 1] + int64_t(u) * np + v : s_.b_off[l - 1] + u;
            T* Hr = H + r * N;
            for (int w = 0; w < nw; ++w) {
              const T* c = C.data() + (int64_t(v) * nw + w) * nb;
              T* hw = Hr + s_.w_off[m - 1] + int64_t(w) * sz[m - 1];
              for (int x = 0; x < sz[m - 1]; ++x) hw[x] += c[x];
              if (bias) Hr[s_.b_off[m - 1] + w] += c[sz[m - 1]];
            }
          }
        }
      }
    }
  }
  // mirror the diagonal blocks' units w < u, then the blocks (l > m) above the diagonal, in tiles
  for (int l = 1; l <= L; ++l) {
    const int na = aug(l - 1), np = sz[l - 1];
    auto row = [&](int u, int v) { return v < np ? s_.w_off[l - 1] + int64_t(u) * np + v : s_.b_off[l - 1] + u; };
    for (int u = 1; u < sz[l]; ++u)
      for (int w = 0; w < u; ++w)
        for (int v = 0; v < na; ++v) {
          const int64_t r = row(u, v);
          for (int x = 0; x < na; ++x) {
            const int64_t c = row(w, x);
            H[c * N + r] = H[r * N + c];
          }
        }
  }
  auto start = [&](int l) { return s_.w_off[l - 1]; };
  auto stop = [&](int l) { return l < L ? s_.w_off[l] : N; };
  constexpr int64_t kTile = 32;
  for (int l = 2; l <= L; ++l)
    for (int m = 1; m < l; ++m)
      for (int64_t r0 = start(l); r0 < stop(l); r0 += kTile)
        for (int64_t c0 = start(m); c0 < stop(m); c0 += kTile)
          for (int64_t r = r0; r < std::min(r0 + kTile, stop(l)); ++r)
            for (int64_t c = c0; c < std::min(c0 + kTile, stop(m)); ++c) H[c * N + r] = H[r * N + c];
  if (s_.l2 != 0)
    for (int l = 1; l <= L; ++l)
      for (int64_t p = s_.w_off[l - 1]; p < s_.b_off[l - 1]; ++p) H[p * N + p] += T(s_.l2);
}

template void Linearization<float>::dense(bool, float*, int);
template void Linearization<double>::dense(bool, double*, int);

}  // namespace pyhessk::cpu
