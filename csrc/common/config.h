// Portability switches shared by every compiled engine: the same headers compile under g++/clang (CPU),
// nvcc (the CUDA module) and NVRTC (kernels compiled at run time through CuPy).
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PYHESSK_HD __host__ __device__
#else
#define PYHESSK_HD
#endif

#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstdint>
#endif

namespace pyhessk {

#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
// Host: the std:: overloads, so that unqualified calls inside namespace pyhessk keep float in float.
// Device code finds CUDA's overloaded math functions in the global namespace instead.
using std::cos;
using std::erfc;
using std::exp;
using std::fabs;
using std::log;
using std::log1p;
using std::sin;
using std::sqrt;
using std::tanh;
#endif

// Accumulator type of reductions: double for float data. Sums run over the batch, and a float sum of n
// terms loses about n·ε/2 in the worst case and √n·ε typically (measured on a bias entry of G at
// n = 400k: 6e-4 relative with float sums against 1e-7 with double).
template <typename scalar_t>
struct acc {
  using type = double;
};
template <typename scalar_t>
using acc_t = typename acc<scalar_t>::type;

}  // namespace pyhessk
