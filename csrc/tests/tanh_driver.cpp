// The tanh of common/math.h. float: against libm's double tanh on every float in [2^-30, 20], relative
// error within kBound eps, odd symmetry, ±1 from |x| = 9 on, and the special values. double: against
// libm's long double tanhl on a geometric grid from the least normal to 30 (ratio 1 + 2^-13) and a
// uniform one over [0, 20] (step 2^-18), within kBoundDouble ulp, odd, ±1 from 20 on, the special values.
// tests/test_cpu_isa.py builds this once per instruction set (with and without FMA contraction the
// rounding differs).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "common/math.h"

namespace {

constexpr double kBound = 4.0;  // eps; measured 2.6 (x86-64-v3) and 3.1 (x86-64)
constexpr double kEps = 1.1920928955078125e-07;
constexpr double kBoundDouble = 4.0;  // ulp; measured 3.3 (both instruction sets)

// out-of-line, so the loop is vectorized as in the engine's sweeps
template <typename T>
__attribute__((noinline)) void eval(int n, const T* x, T* y) {
  for (int i = 0; i < n; ++i) y[i] = pyhessk::fast_tanh(x[i]);
}

// The double tanh on the grids above: failures (each printed, the first few), the worst error in ulp.
long check_double(double& worst, double& worst_x) {
  std::vector<double> x;
  for (double v = std::numeric_limits<double>::min(); v < 30.0; v *= 1.0 + 0x1p-13) x.push_back(v);
  for (int i = 0; i <= 20 << 18; ++i) x.push_back(std::ldexp(double(i), -18));
  const size_t n = x.size();
  std::vector<double> xn(n), y(n), yn(n);
  for (size_t i = 0; i < n; ++i) xn[i] = -x[i];
  eval(int(n), x.data(), y.data());
  eval(int(n), xn.data(), yn.data());
  long failures = 0;
  for (size_t i = 0; i < n; ++i) {
    const long double want = tanhl((long double)x[i]);
    const double w = double(want);
    const double ulp = w == 0 ? std::numeric_limits<double>::denorm_min() : std::nextafter(w, 2.0) - w;
    const double err = double(std::fabs((long double)y[i] - want)) / ulp;
    if (err > worst) worst = err, worst_x = x[i];
    const bool ok = err <= kBoundDouble && yn[i] == -y[i] && (x[i] < 20.0 || y[i] == 1.0);
    if (!ok && failures++ < 5) std::printf("tanh(%.17g) = %.17g, tanh(-x) = %.17g, want %.20Lg\n", x[i], y[i], yn[i], want);
  }
  const double inf = std::numeric_limits<double>::infinity(), tiny = std::numeric_limits<double>::denorm_min();
  double special[6] = {0.0, -0.0, tiny, inf, -inf, std::numeric_limits<double>::quiet_NaN()}, out[6];
  eval(6, special, out);
  if (!(out[0] == 0.0 && !std::signbit(out[0]) && out[1] == 0.0 && std::signbit(out[1]) && out[2] == tiny &&
        out[3] == 1.0 && out[4] == -1.0 && std::isnan(out[5]))) {
    std::printf("double special values: %g %g %g %g %g %g\n", out[0], out[1], out[2], out[3], out[4], out[5]);
    ++failures;
  }
  return failures;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

int main() {
  const int kBatch = 1 << 16;
  std::vector<float> x(kBatch), y(kBatch), xn(kBatch), yn(kBatch);
  const uint32_t first = 0x30800000u, last = 0x41a00000u;  // 2^-30, 20
  double worst = 0;
  float worst_x = 0;
  long failures = 0, checked = 0;
  for (uint32_t u = first; u <= last;) {
    int n = 0;
    for (; n < kBatch && u <= last; ++n, ++u) x[n] = from_bits(u), xn[n] = -x[n];
    eval(n, x.data(), y.data());
    eval(n, xn.data(), yn.data());
    for (int i = 0; i < n; ++i) {
      const double want = std::tanh(double(x[i]));
      const double err = std::fabs(double(y[i]) - want) / want / kEps;
      if (err > worst) worst = err, worst_x = x[i];
      const bool ok = err <= kBound && yn[i] == -y[i] && (x[i] < 9.0f || y[i] == 1.0f);
      if (!ok && failures++ < 5)
        std::printf("tanh(%.9g) = %.9g, tanh(-x) = %.9g, want %.17g\n", x[i], y[i], yn[i], want);
    }
    checked += n;
  }
  const float inf = std::numeric_limits<float>::infinity(), tiny = from_bits(1u);  // the least denormal
  float special[6] = {0.0f, -0.0f, tiny, inf, -inf, std::numeric_limits<float>::quiet_NaN()}, out[6];
  eval(6, special, out);
  const bool specials = out[0] == 0.0f && !std::signbit(out[0]) && out[1] == 0.0f && std::signbit(out[1]) &&
                        out[2] == tiny && out[3] == 1.0f && out[4] == -1.0f && std::isnan(out[5]);
  if (!specials) {
    std::printf("special values: %g %g %g %g %g %g\n", out[0], out[1], out[2], out[3], out[4], out[5]);
    ++failures;
  }
  std::printf("worst %.3f eps at %.9g over %ld floats\n", worst, worst_x, checked);
  double worst_d = 0, worst_dx = 0;
  failures += check_double(worst_d, worst_dx);
  std::printf("double: worst %.3f ulp at %.17g\n", worst_d, worst_dx);
  std::printf("ok: %ld failures\n", failures);
  return failures != 0;
}
