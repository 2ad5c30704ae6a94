// Elementwise transcendental functions for the compiled engines.
// Device code (nvcc, NVRTC) uses CUDA's own exp/tanh. On the host, libm's scalar tanh costs ~13 ns per
// element on the reference machine (more than the GEMMs of a small layer), so the host versions here are
// branch-free polynomial evaluations that compilers vectorize:
//   exp:  x = k ln2 + r, |r| ≤ ln2/2 (Cody–Waite split of ln2), exp(r) by its Taylor polynomial
//         (degree 13 in double, 7 in float), 2^k assembled in the exponent bits;
//   tanh: in double, expm1(2|x|) / (expm1(2|x|) + 2) from the same reduction; in float, a rational
//         function of x² (below). Both saturate where tanh rounds to ±1, with no branch.
// Errors are a few ulp (tests/test_cpp_engine.py against libm; csrc/tests/tanh_driver.cpp over dense sets).
#pragma once
#include "config.h"

#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
#include <algorithm>
#include <cstring>
#endif

namespace pyhessk {

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)

template <typename T>
PYHESSK_HD inline T fast_exp(T x) {
  return exp(x);
}
template <typename T>
PYHESSK_HD inline T fast_tanh(T x) {
  return tanh(x);
}

#else

// e^y = 2^k (1 + p) with p = expm1(r): y = k ln2 + r, |r| ≤ ln2/2, returns p and sets scale = 2^k. k is
// rounded by adding 1.5·2^52 to y/ln2: it lands in the low mantissa bits, which also give 2^k's exponent
// without a float-to-int conversion (none vectorizes on baseline x86-64). For y in [−708, 709].
inline double exp_reduced(double y, double& scale) {
  const double shifted = y * 1.4426950408889634074 + 6755399441055744.0;
  const double k = shifted - 6755399441055744.0;
  const double r = (y - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // expm1(r) = r (1 + r/2! + … + r¹²/13!)
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  uint64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 1023u) << 52;  // the shifter's own bits leave through the top (unsigned: no overflow)
  std::memcpy(&scale, &bits, sizeof scale);
  return p * r;
}

inline double fast_exp(double x) {
  double scale;
  const double p = exp_reduced(std::min(std::max(x, -708.0), 709.0), scale);
  return scale * p + scale;
}

inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5·2^23, as in the double version
  const float k = shifted - 12582912.0f;
  const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723212e-6f;
  float p = 1.0f / 40320.0f;
  p = p * r + 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// double: tanh(a) = e / (e + 2) with e = expm1(2a) = 2^k (1 + p) − 1, a = |x| ≤ 20 (tanh rounds to 1 from
// 19.06 on; at 20, e + 2 rounds to e): one exp reduction and one division for every x, accurate down to the
// smallest x because expm1 is (no cancellation, unlike 1 − 2/(e^{2a} + 1)). At most 3.3 ulp, odd, ±1 from
// 20 on (csrc/tests/tanh_driver.cpp).
inline double fast_tanh(double x) {
  const double a = std::min(std::fabs(x), 20.0);  // NaN passes through
  double scale;
  const double p = exp_reduced(2.0 * a, scale);
  const double e = scale * p + (scale - 1.0);  // 2^k − 1 is exact
  return std::copysign(e / (e + 2.0), x);
}

// float: tanh(x) ≈ x·P(x²)/Q(x²) with P and Q of degree 4, a rational fit for relative error on [0, 9]
// (tools/fit_tanh.py: 2e-8 before rounding). Every coefficient is positive, so Horner's rule does not
// cancel; one division and no exp make it 2.7× faster than 1 − 2/(exp(2x) + 1). In float arithmetic the
// error is at most 3.1 eps over every float (csrc/tests/tanh_driver.cpp). For |x| ≥ 9, where tanh is
// within an ulp of 1, it returns ±1.
inline float fast_tanh(float x) {
  const float c = std::min(std::max(x, -9.0f), 9.0f);  // NaN passes through
  const float z = c * c;
  float p = 1.3354593885051572e-08f;
  p = p * z + 2.0609100558057587e-05f;
  p = p * z + 3.4955929514734656e-03f;
  p = p * z + 1.3381031122825887e-01f;
  p = p * z + 9.9999997958954290e-01f;
  float q = 7.7765489638375193e-07f;
  q = q * z + 3.2856399487004207e-04f;
  q = q * z + 2.5877004896644171e-02f;
  q = q * z + 4.6714346778213350e-01f;
  q = q * z + 1.0f;
  const float r = c * p / q;
  return std::fabs(x) >= 9.0f ? std::copysign(1.0f, x) : r;
}

#endif

}  // namespace pyhessk
