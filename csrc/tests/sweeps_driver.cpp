// The tiled transpose of cpu/sweeps.h against a plain loop, on every shape up to 70 × 70 (cache and register
// tiles whole, ragged in one or both directions, or absent), for float and double, assigning and accumulating.
// tests/test_cpu_isa.py builds this with -DPYHESSK_CPU_NO_CLONES once per instruction set, so both code
// paths the loader can pick are checked on any machine that can run them.
#include <cstdio>
#include <vector>

#include "cpu/sweeps.h"

namespace {

template <typename T, bool kAdd>
int check(int64_t rows, int64_t cols) {
  std::vector<T> src(rows * cols), dst(rows * cols), want(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    src[i] = T(i % 97) + T(0.25) * T(i % 5);
    dst[i] = want[i] = T(i % 13) - T(6);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want[c * rows + r] = (kAdd ? want[c * rows + r] : T(0)) + src[r * cols + c];
  pyhessk::cpu::transpose<T, kAdd>(rows, cols, src.data(), dst.data());
  for (int64_t i = 0; i < rows * cols; ++i)
    if (dst[i] != want[i]) {
      std::printf("mismatch: %s%s rows=%ld cols=%ld at %ld: %g != %g\n", sizeof(T) == 4 ? "float" : "double",
                  kAdd ? " (add)" : "", long(rows), long(cols), long(i), double(dst[i]), double(want[i]));
      return 1;
    }
  return 0;
}

}  // namespace

int main() {
  int failures = 0, cases = 0;
  for (int64_t rows = 1; rows <= 70; ++rows)
    for (int64_t cols = 1; cols <= 70; ++cols) {
      failures += check<float, false>(rows, cols) + check<float, true>(rows, cols);
      failures += check<double, false>(rows, cols) + check<double, true>(rows, cols);
      cases += 4;
    }
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{4096, 50}, {7, 4096}, {1000, 16}, {64, 65}}) {
    failures += check<float, false>(rows, cols) + check<double, true>(rows, cols);
    cases += 2;
  }
  std::printf("ok: %d failures in %d cases\n", failures, cases);
  return failures != 0;
}
