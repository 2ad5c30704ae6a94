// The compiled engines' one definition of each loss head, as row functions over one sample's d outputs.
// Ids equal pyhessk/_spec.py's. Targets arrive in canonical form: a row y of d numbers (labels one-hot).
//   head(f, y, d, e, aux)   → ℓ(f, y); writes e = ∂ℓ/∂f and aux (what H_out needs: p, or σ(1 − σ))
//   hout(aux, r, d, out)    → out = H_out r, never forming the d × d matrix
//   factor(aux, d, ct)      → ct (d × d, row-major) = Cᵀ with H_out = C Cᵀ (SPEC §3)
//   factor_entry(aux, d, a, i) → Cᵀ[a][i] alone (what one GPU thread writes); factor is built from it
#pragma once
#include "config.h"

namespace pyhessk {

enum class Loss : int {
  mse = 0,
  softmax_cross_entropy = 1,
  sigmoid_cross_entropy = 2,
};
constexpr int kNumLosses = 3;

template <Loss L>
struct LossOps;

template <>
struct LossOps<Loss::mse> {
  template <typename T>
  PYHESSK_HD static T head(const T* f, const T* y, int d, T* e, T* aux) {
    acc_t<T> v = 0;
    for (int j = 0; j < d; ++j) {
      e[j] = f[j] - y[j];
      v += e[j] * e[j];
      aux[j] = T(1);
    }
    return T(0.5) * T(v);
  }
  template <typename T>
  PYHESSK_HD static void hout(const T* aux, const T* r, int d, T* out) {
    for (int j = 0; j < d; ++j) out[j] = r[j];
  }
  template <typename T>
  PYHESSK_HD static T factor_entry(const T* aux, int d, int a, int i) {
    return a == i ? T(1) : T(0);
  }
  template <typename T>
  PYHESSK_HD static void factor(const T* aux, int d, T* ct) {
    for (int a = 0; a < d; ++a)
      for (int i = 0; i < d; ++i) ct[a * d + i] = factor_entry(aux, d, a, i);
  }
};

template <>
struct LossOps<Loss::softmax_cross_entropy> {
  template <typename T>
  PYHESSK_HD static T head(const T* f, const T* y, int d, T* e, T* p) {
    T m = f[0];
    for (int j = 1; j < d; ++j) m = f[j] > m ? f[j] : m;
    acc_t<T> s = 0, yf = 0;
    for (int j = 0; j < d; ++j) {
      s += exp(f[j] - m);
      yf += y[j] * f[j];
    }
    const T lse = m + log(T(s));
    for (int j = 0; j < d; ++j) {
      p[j] = exp(f[j] - lse);
      e[j] = p[j] - y[j];
    }
    return lse - T(yf);
  }
  // H_out r = p ⊙ (r − pᵀr), with r − pᵀr taken from the most probable class a: pᵀr = r_a − t for
  // t = Σ_j p_j (r_a − r_j) (Σ p = 1). Subtracting pᵀr itself cancels at a once p_a rounds to 1 (a confident
  // prediction), losing the 1 − p_a that is the whole of H_out's a-th row; t keeps it.
  template <typename T>
  PYHESSK_HD static void hout(const T* p, const T* r, int d, T* out) {
    int a = 0;
    for (int j = 1; j < d; ++j) a = p[j] > p[a] ? j : a;
    acc_t<T> t = 0;
    for (int j = 0; j < d; ++j) t += p[j] * (r[a] - r[j]);
    for (int j = 0; j < d; ++j) out[j] = p[j] * (r[j] - r[a] + T(t));
  }
  template <typename T>
  PYHESSK_HD static T factor_entry(const T* p, int d, int a, int i) {  // Cᵀ = diag(√p) − √p pᵀ
    const T sa = sqrt(p[a]);
    return (a == i ? sa : T(0)) - sa * p[i];
  }
  template <typename T>
  PYHESSK_HD static void factor(const T* p, int d, T* ct) {
    for (int a = 0; a < d; ++a)
      for (int i = 0; i < d; ++i) ct[a * d + i] = factor_entry(p, d, a, i);
  }
};

template <>
struct LossOps<Loss::sigmoid_cross_entropy> {
  template <typename T>
  PYHESSK_HD static T head(const T* f, const T* y, int d, T* e, T* h) {
    acc_t<T> v = 0;
    for (int j = 0; j < d; ++j) {
      const T z = f[j];
      const T p = T(1) / (T(1) + exp(-z));
      h[j] = p / (T(1) + exp(z));  // σ(z)σ(−z)
      e[j] = p - y[j];
      v += (z > T(0) ? z : T(0)) + log1p(exp(-fabs(z))) - y[j] * z;
    }
    return T(v);
  }
  template <typename T>
  PYHESSK_HD static void hout(const T* h, const T* r, int d, T* out) {
    for (int j = 0; j < d; ++j) out[j] = h[j] * r[j];
  }
  template <typename T>
  PYHESSK_HD static T factor_entry(const T* h, int d, int a, int i) {
    return a == i ? sqrt(h[a]) : T(0);
  }
  template <typename T>
  PYHESSK_HD static void factor(const T* h, int d, T* ct) {
    for (int a = 0; a < d; ++a)
      for (int i = 0; i < d; ++i) ct[a * d + i] = factor_entry(h, d, a, i);
  }
};

}  // namespace pyhessk
