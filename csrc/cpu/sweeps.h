// Elementwise sweeps shared by the CPU engine's passes (linearization_cpu.cpp, dense_cpu.cpp).
#pragma once
#include <cstdint>

#include "cpu/clones.h"

namespace pyhessk::cpu {

// X (n, k, m) ⊙= φ′ (n, m), broadcast over k.
template <typename T>
PYHESSK_CPU_CLONES void scale_rows(int n, int k, int m, const T* d1, T* X) {
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < k; ++j) {
      T* x = X + (int64_t(s) * k + j) * m;
      const T* p = d1 + int64_t(s) * m;
      for (int c = 0; c < m; ++c) x[c] *= p[c];
    }
}

}  // namespace pyhessk::cpu
