// The loss heads on the GPU: one thread per sample evaluates the loss row function of common/losses.h
// (ℓ, ∂ℓ/∂f and the data H_out needs), and one thread per (sample, direction) applies H_out.
// F, Y, E, aux are (n, d); R and out are (n, k, d).
#pragma once
#include "../../common/losses.h"
#include "launch.cuh"

namespace pyhessk {
namespace cuda {

// losses[s] = ℓ(f_s, y_s) (in double); E[s] = sc·∂ℓ/∂f_s; aux[s] = the head's H_out data.
template <typename T, int kLoss>
PYHESSK_HD inline void loss_head_step(index_t s, index_t d, const T* F, const T* Y, T* E, T* aux, T sc,
                                      double* losses) {
  const index_t o = s * d;
  losses[s] = double(LossOps<static_cast<Loss>(kLoss)>::head(F + o, Y + o, int(d), E + o, aux + o));
  for (index_t j = 0; j < d; ++j) E[o + j] *= sc;
}

// out[s, j, :] = sc · H_out,s R[s, j, :] for row sj = s·k + j.
template <typename T, int kLoss>
PYHESSK_HD inline void output_hessian_step(index_t sj, index_t k, index_t d, const T* aux, const T* R, T sc, T* out) {
  const index_t o = sj * d;
  LossOps<static_cast<Loss>(kLoss)>::hout(aux + (sj / k) * d, R + o, int(d), out + o);
  for (index_t c = 0; c < d; ++c) out[o + c] *= sc;
}

}  // namespace cuda
}  // namespace pyhessk

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
namespace pyhessk {
namespace cuda {

template <typename T, int kLoss>
PYHESSK_GLOBAL void loss_head_kernel(index_t n, index_t d, const T* F, const T* Y, T* E, T* aux, T sc,
                                     double* losses) {
  PYHESSK_GRID_STRIDE(s, n) loss_head_step<T, kLoss>(s, d, F, Y, E, aux, sc, losses);
}
template <typename T, int kLoss>
PYHESSK_GLOBAL void output_hessian_kernel(index_t rows, index_t k, index_t d, const T* aux, const T* R, T sc,
                                          T* out) {
  PYHESSK_GRID_STRIDE(sj, rows) output_hessian_step<T, kLoss>(sj, k, d, aux, R, sc, out);
}

}  // namespace cuda
}  // namespace pyhessk
#endif
