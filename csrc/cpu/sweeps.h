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

namespace detail {

#if defined(__GNUC__)
// One register tile: dst (w, w) = srcᵀ (or += with kAdd) for w = 32 bytes / sizeof(T) (8 floats, 4
// doubles), src rows `ls` apart and dst rows `ld` apart. Written with the compilers' vector extensions so
// that one source serves every clone: the x86-64-v3 clone turns the shuffles into unpack, shuffle and
// 128-bit lane permutes in ymm registers, the baseline clone into pairs of SSE shuffles.
template <typename T, bool kAdd>
inline __attribute__((always_inline)) void register_transpose(const T* src, int64_t ls, T* dst, int64_t ld) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "register_transpose: float or double");
  typedef T vec __attribute__((vector_size(32)));
  typedef T row __attribute__((vector_size(32), aligned(sizeof(T)), may_alias));  // an unaligned load or store
  constexpr int w = 32 / sizeof(T);
  vec r[w], out[w];
#pragma GCC unroll 8
  for (int i = 0; i < w; ++i) r[i] = *reinterpret_cast<const row*>(src + i * ls);
  if constexpr (w == 8) {
    vec t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {  // interleave rows 2i, 2i+1 within each 128-bit lane
      t[2 * i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[2 * i + 1] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 2; ++i)  // pairs of pairs: four consecutive rows per 128-bit lane
      for (int j = 0; j < 2; ++j) {
        const vec a = t[4 * i + j], b = t[4 * i + 2 + j];
        u[4 * i + 2 * j] = __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13);
        u[4 * i + 2 * j + 1] = __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
      }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {  // join the lanes of rows 0–3 and 4–7
      out[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
      out[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
  } else {
    const vec t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6);
    const vec t1 = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
    const vec t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6);
    const vec t3 = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
    out[0] = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    out[1] = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    out[2] = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    out[3] = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
  }
#pragma GCC unroll 8
  for (int i = 0; i < w; ++i) {
    row* d = reinterpret_cast<row*>(dst + i * ld);
    if constexpr (kAdd)
      *d = *d + out[i];
    else
      *d = out[i];
  }
}
constexpr bool kRegisterTranspose = true;
#else
template <typename T, bool kAdd>
inline void register_transpose(const T*, int64_t, T*, int64_t) {}
constexpr bool kRegisterTranspose = false;
#endif

}  // namespace detail

// dst (cols, rows) = srcᵀ for src (rows, cols), both row-major, or dst += srcᵀ with kAdd; in tiles that stay
// in cache, each made of register tiles of 8 × 8 floats (4 × 4 doubles), the ragged edges one number at a
// time. An untiled scatter of k short runs per source row is slow where the destination's rows lie a
// multiple of 4 KiB apart (a layer of 64 × 64 weights): its k write streams share one set of L1 lines
// (measured 10× slower for k = 16). The register tiles are 2–4× faster than a scalar tiled loop (0.18–0.26
// against 0.5–1.4 ns per float).
template <typename T, bool kAdd = false>
PYHESSK_CPU_CLONES void transpose(int64_t rows, int64_t cols, const T* src, T* dst) {
  // tiles of 64 source rows × 32 columns: each destination row gets 256 contiguous bytes per tile (measured
  // 15–30% faster than 32 × 32 on (n, n_l) activations with n = 512 … 4096)
  constexpr int64_t kRows = 64, kCols = 32;
  constexpr int64_t w = (detail::kRegisterTranspose && (sizeof(T) == 4 || sizeof(T) == 8)) ? 32 / sizeof(T) : 1;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows)
    for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
      const int64_t r1 = std::min(rows, r0 + kRows), c1 = std::min(cols, c0 + kCols);
      // [r0, rv) × [c0, cv) in register tiles
      const int64_t rv = w > 1 ? r0 + (r1 - r0) / w * w : r0, cv = w > 1 ? c0 + (c1 - c0) / w * w : c0;
      if constexpr (w > 1)
        for (int64_t c = c0; c < cv; c += w)
          for (int64_t r = r0; r < rv; r += w)
            detail::register_transpose<T, kAdd>(src + r * cols + c, cols, dst + c * rows + r, rows);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = c < cv ? rv : r0; r < r1; ++r) {
          if constexpr (kAdd)
            dst[c * rows + r] += src[r * cols + c];
          else
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

}  // namespace pyhessk::cpu
