// Elementwise sweeps shared by the CPU engine's passes (linearization_cpu.cpp, dense_cpu.cpp).
#pragma once
#include <algorithm>
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

// dst (cols, rows) = srcᵀ for src (rows, cols), both row-major, or dst += srcᵀ with kAdd; in tiles that stay
// in cache. An untiled scatter of k short runs per source row is slow where the destination's rows lie a
// multiple of 4 KiB apart (a layer of 64 × 64 weights): its k write streams share one set of L1 lines
// (measured 10× slower for k = 16).
template <typename T, bool kAdd = false>
PYHESSK_CPU_CLONES void transpose(int64_t rows, int64_t cols, const T* src, T* dst) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) {
          if constexpr (kAdd)
            dst[c * rows + r] += src[r * cols + c];
          else
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

}  // namespace pyhessk::cpu
