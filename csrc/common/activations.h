// The compiled engines' one definition of each hidden activation: φ, φ′ and φ″.
// Ids equal pyhessk/_spec.py's (tests/test_cpp_engine.py checks it). Edge conventions follow autodiff:
// relu′(0) = 0, leaky_relu′(0) = slope, φ″ = 0 for the piecewise-linear ones.
#pragma once
#include "config.h"
#include "math.h"

namespace pyhessk {

enum class Act : int {
  identity = 0,
  tanh = 1,
  sigmoid = 2,
  relu = 3,
  leaky_relu = 4,
  softplus = 5,
  gelu = 6,
  silu = 7,
  sin = 8,
};
constexpr int kNumActivations = 9;
constexpr double kLeakySlope = 0.01;

template <typename T>
PYHESSK_HD inline T logistic(T z) {
  return T(1) / (T(1) + fast_exp(-z));
}

// ActOps<A>::f(z) is φ(z); ActOps<A>::eval(z, a, d1, d2) writes φ, φ′, φ″ at once (sharing the
// transcendental work); kD2Zero says φ″ ≡ 0, so passes may skip the second-order terms.
template <Act A>
struct ActOps;

template <>
struct ActOps<Act::identity> {
  static constexpr bool kD2Zero = true;
  template <typename T> PYHESSK_HD static T f(T z) { return z; }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) { a = z; d1 = T(1); d2 = T(0); }
};

template <>
struct ActOps<Act::tanh> {
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T f(T z) { return fast_tanh(z); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = fast_tanh(z);
    d1 = T(1) - a * a;
    d2 = T(-2) * a * d1;
  }
};

template <>
struct ActOps<Act::sigmoid> {
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T f(T z) { return logistic(z); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = logistic(z);
    d1 = a * logistic(-z);  // σ(z)σ(−z): no cancellation in σ(1 − σ)
    d2 = d1 * (T(1) - T(2) * a);
  }
};

template <>
struct ActOps<Act::relu> {
  static constexpr bool kD2Zero = true;
  template <typename T> PYHESSK_HD static T f(T z) { return z > T(0) ? z : T(0); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = z > T(0) ? z : T(0);
    d1 = z > T(0) ? T(1) : T(0);
    d2 = T(0);
  }
};

template <>
struct ActOps<Act::leaky_relu> {
  static constexpr bool kD2Zero = true;
  template <typename T> PYHESSK_HD static T f(T z) { return z > T(0) ? z : z * T(kLeakySlope); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = z > T(0) ? z : z * T(kLeakySlope);
    d1 = z > T(0) ? T(1) : T(kLeakySlope);
    d2 = T(0);
  }
};

template <>
struct ActOps<Act::softplus> {
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T f(T z) { return (z > T(0) ? z : T(0)) + log1p(exp(-fabs(z))); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = f(z);
    d1 = logistic(z);
    d2 = d1 * logistic(-z);
  }
};

template <>
struct ActOps<Act::gelu> {  // exact form: z Φ(z)
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T cdf(T z) { return T(0.5) * erfc(-z * T(0.70710678118654752440)); }
  template <typename T> PYHESSK_HD static T f(T z) { return z * cdf(z); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    const T c = cdf(z);
    const T pdf = T(0.39894228040143267794) * exp(T(-0.5) * z * z);
    a = z * c;
    d1 = c + z * pdf;
    d2 = pdf * (T(2) - z * z);
  }
};

template <>
struct ActOps<Act::silu> {
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T f(T z) { return z * logistic(z); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    const T s = logistic(z), sm = logistic(-z);
    a = z * s;
    d1 = s * (T(1) + z * sm);
    d2 = s * sm * (T(2) + z * (sm - s));
  }
};

template <>
struct ActOps<Act::sin> {
  static constexpr bool kD2Zero = false;
  template <typename T> PYHESSK_HD static T f(T z) { return sin(z); }
  template <typename T> PYHESSK_HD static void eval(T z, T& a, T& d1, T& d2) {
    a = sin(z);
    d1 = cos(z);
    d2 = -a;
  }
};

}  // namespace pyhessk
