// Host emulation of the CUDA kernels: every kernel of csrc/cuda/kernels run on the CPU by the host compiler,
// one loop over the same step functions the GPU threads call (per-entry reductions and the sampler run their
// items in order). The tests load it with ctypes (pyhessk/backends/cuda/_emulation.py) to check the GPU
// engine's index arithmetic and pass orchestration on machines without a GPU. Not part of the installed
// engine. Signatures: (dtype 0 = float / 1 = double, template tag, element or item count, kernel arguments)
// with pointers as void*, scalars of the working dtype as double.
#include <vector>

#include "../../common/dispatch.h"
#include "../kernels/all.cuh"

using pyhessk::cuda::index_t;
namespace k = pyhessk::cuda;

#define EMU_DTYPE(dtype, ...) \
  if (dtype == 0) {           \
    using T = float;          \
    __VA_ARGS__               \
  } else {                    \
    using T = double;         \
    __VA_ARGS__               \
  }
#define P(x) static_cast<T*>(x)
#define CP(x) static_cast<const T*>(x)
#define IP(x) static_cast<const index_t*>(x)
#define LOOP(i, total) for (index_t i = 0; i < (total); ++i)

extern "C" {

void emu_activation_kernel(int dtype, int tag, index_t total, index_t m, void* b, void* Z, void* d1, void* d2) {
  EMU_DTYPE(dtype, PYHESSK_DISPATCH_ACT(tag, kAct, [&] {
    LOOP(i, total) k::activation_step<T, int(kAct)>(i, m, CP(b), P(Z), P(d1), P(d2));
  });)
}
void emu_activation_value_kernel(int dtype, int tag, index_t total, index_t m, void* b, void* Z) {
  EMU_DTYPE(dtype, PYHESSK_DISPATCH_ACT(tag, kAct, [&] {
    LOOP(i, total) k::activation_value_step<T, int(kAct)>(i, m, CP(b), P(Z));
  });)
}
void emu_add_bias_kernel(int dtype, int, index_t total, index_t m, void* b, void* Z) {
  EMU_DTYPE(dtype, LOOP(i, total) k::add_bias_step<T>(i, m, CP(b), P(Z));)
}
void emu_rforward_kernel(int dtype, int, index_t total, index_t kk, index_t m, void* V, index_t b_off, void* d1,
                         void* RZ, void* RA) {
  EMU_DTYPE(dtype, LOOP(i, total) k::rforward_step<T>(i, kk, m, CP(V), b_off, CP(d1), P(RZ), P(RA));)
}
void emu_rbackward_kernel(int dtype, int, index_t total, index_t kk, index_t m, void* d1, void* d2, void* G, void* RZ,
                          void* RG) {
  EMU_DTYPE(dtype, LOOP(i, total) k::rbackward_step<T>(i, kk, m, CP(d1), CP(d2), CP(G), CP(RZ), P(RG));)
}
void emu_scale_rows_kernel(int dtype, int, index_t total, index_t kk, index_t m, void* d1, void* X) {
  EMU_DTYPE(dtype, LOOP(i, total) k::scale_rows_step<T>(i, kk, m, CP(d1), P(X));)
}
void emu_hadamard_kernel(int dtype, int, index_t total, void* x, void* y, void* out) {
  EMU_DTYPE(dtype, LOOP(i, total) k::hadamard_step<T>(i, CP(x), CP(y), P(out));)
}
void emu_axpy_kernel(int dtype, int, index_t total, double alpha, void* x, void* y) {
  EMU_DTYPE(dtype, LOOP(i, total) k::axpy_step<T>(i, T(alpha), CP(x), P(y));)
}
void emu_add_scalar_kernel(int dtype, int, index_t total, double c, void* y) {
  EMU_DTYPE(dtype, LOOP(i, total) k::add_scalar_step<T>(i, T(c), P(y));)
}
void emu_square_kernel(int dtype, int, index_t total, void* x, void* out) {
  EMU_DTYPE(dtype, LOOP(i, total) k::square_step<T>(i, CP(x), P(out));)
}
void emu_pack_rows_kernel(int dtype, int, index_t total, void* V, index_t w0, index_t kk, index_t nl, void* buf) {
  EMU_DTYPE(dtype, LOOP(i, total) k::pack_rows_step<T>(i, CP(V), w0, kk, nl, P(buf));)
}
void emu_pack_cols_kernel(int dtype, int, index_t total, void* V, index_t w0, index_t kk, index_t n_prev, void* buf) {
  EMU_DTYPE(dtype, LOOP(i, total) k::pack_cols_step<T>(i, CP(V), w0, kk, n_prev, P(buf));)
}
void emu_assemble_kernel(int dtype, int, index_t total, index_t kk, index_t nl, index_t n_prev, void* hw, void* t2,
                         void* V, double lam, index_t w0, void* out) {
  EMU_DTYPE(dtype, LOOP(i, total) k::assemble_step<T>(i, kk, nl, n_prev, CP(hw), CP(t2), CP(V), T(lam), w0, P(out));)
}
void emu_loss_head_kernel(int dtype, int tag, index_t n, index_t d, void* F, void* Y, void* E, void* aux, double sc,
                          void* losses) {
  EMU_DTYPE(dtype, PYHESSK_DISPATCH_LOSS(tag, kLoss, [&] {
    LOOP(s, n) k::loss_head_step<T, int(kLoss)>(s, d, CP(F), CP(Y), P(E), P(aux), T(sc), static_cast<double*>(losses));
  });)
}
void emu_output_hessian_kernel(int dtype, int tag, index_t rows, index_t kk, index_t d, void* aux, void* R, double sc,
                               void* out) {
  EMU_DTYPE(dtype, PYHESSK_DISPATCH_LOSS(tag, kLoss, [&] {
    LOOP(sj, rows) k::output_hessian_step<T, int(kLoss)>(sj, kk, d, CP(aux), CP(R), T(sc), P(out));
  });)
}
void emu_output_factor_kernel(int dtype, int tag, index_t total, index_t n, index_t d, void* aux, void* S) {
  EMU_DTYPE(dtype, PYHESSK_DISPATCH_LOSS(tag, kLoss, [&] {
    LOOP(i, total) k::output_factor_step<T, int(kLoss)>(i, n, d, CP(aux), P(S));
  });)
}
void emu_scale_sensitivity_kernel(int dtype, int, index_t total, index_t n, index_t d, index_t n_l, void* d1, void* S) {
  EMU_DTYPE(dtype, LOOP(i, total) k::scale_sensitivity_step<T>(i, n, d, n_l, CP(d1), P(S));)
}
void emu_column_norm_kernel(int dtype, int, index_t total, index_t d, void* S, void* nu) {
  EMU_DTYPE(dtype, LOOP(i, total) k::column_norm_step<T>(i, d, CP(S), P(nu));)
}
void emu_transpose_kernel(int dtype, int, index_t total, index_t n, index_t m, void* A, void* AT) {
  EMU_DTYPE(dtype, LOOP(i, total) k::transpose_step<T>(i, n, m, CP(A), P(AT));)
}
void emu_gather_kernel(int dtype, int, index_t total, index_t nd, index_t d, void* S, void* AT, void* sb, void* ab,
                       void* out) {
  EMU_DTYPE(dtype, LOOP(i, total) k::gather_step<T>(i, nd, d, CP(S), CP(AT), IP(sb), IP(ab), P(out));)
}
void emu_contract_kernel(int dtype, int, index_t total, index_t n, index_t d, index_t m, void* S_l, void* U, void* Tl) {
  EMU_DTYPE(dtype, LOOP(i, total) k::contract_step<T>(i, n, d, m, CP(S_l), CP(U), P(Tl));)
}
void emu_scatter_columns_kernel(int dtype, int, index_t total, index_t m, index_t n_prev, void* R, index_t w0,
                                void* out) {
  EMU_DTYPE(dtype, LOOP(i, total) k::scatter_columns_step<T>(i, m, n_prev, CP(R), w0, P(out));)
}
// The column sums run one item per (tile, chunk) and then per tile, with the kernels' sum_block; each column
// is summed in row order in double (the GPU combines kReduceThreads / kSumCols interleaved lanes, also in
// double).
void emu_column_partials_kernel(int dtype, int, index_t items, index_t n, index_t m, void* X, void* partial) {
  EMU_DTYPE(dtype, LOOP(t, items) {
    const k::SumBlock b = k::sum_block(t, n, m, k::kSumRows);
    for (index_t c = b.c0; c < b.c1; ++c) {
      double total = 0;
      for (index_t s = b.r0; s < b.r1; ++s) total += double(CP(X)[s * m + c]);
      static_cast<double*>(partial)[b.chunk * m + c] = total;
    }
  })
}
void emu_column_finish_kernel(int dtype, int, index_t items, index_t chunks, index_t kk, index_t n_l, void* partial,
                              void* out) {
  EMU_DTYPE(dtype, LOOP(t, items) {
    const k::SumBlock b = k::sum_block(t, chunks, kk * n_l, chunks);
    for (index_t c = b.c0; c < b.c1; ++c) {
      double total = 0;
      for (index_t s = b.r0; s < b.r1; ++s) total += static_cast<const double*>(partial)[s * kk * n_l + c];
      P(out)[k::column_sum_out(c, kk, n_l)] = T(total);
    }
  })
}
void emu_row_sums_kernel(int dtype, int, index_t items, index_t n, void* X, double sc, void* out) {
  EMU_DTYPE(dtype, LOOP(t, items) {
    double total = 0;
    LOOP(s, n) total += double(CP(X)[t * n + s]);
    P(out)[t] = T(double(T(sc)) * total);
  })
}
void emu_entries_kernel(int dtype, int, index_t items, index_t n, index_t d, void* S, void* AT, void* sp, void* ap,
                        void* sq, void* aq, void* lam, double sc, void* out) {
  EMU_DTYPE(dtype, LOOP(t, items) {
    double total = 0;
    LOOP(kk, n) total += double(k::entry_term<T>(kk, d, CP(S), CP(AT), IP(sp)[t], IP(ap)[t], IP(sq)[t], IP(aq)[t]));
    P(out)[t] = T(sc) * T(total) + CP(lam)[t];
  })
}
void emu_sample_kernel(int dtype, int, index_t items, index_t n, index_t d, index_t s, unsigned long long seed,
                       index_t t0, void* S, void* AT, void* nu, void* sp, void* ap, void* np, void* sq, void* aq,
                       void* nq, void* lam, double sc, void* cdf_ws, void* out) {
  EMU_DTYPE(dtype, LOOP(t, items) {
    double* cdf = static_cast<double*>(cdf_ws) + t * n;
    double run = 0;
    LOOP(kk, n) {
      run += k::sample_weight<T>(kk, CP(AT), CP(nu), IP(ap)[t], IP(np)[t], IP(aq)[t], IP(nq)[t]);
      cdf[kk] = run;
    }
    double acc = 0;
    if (run > 0) {
      const unsigned long long state0 = k::sample_stream(seed, t0 + t);
      LOOP(r, s) acc += k::sample_draw<T>(state0, r, cdf, n, d, CP(S), CP(AT), IP(sp)[t], IP(ap)[t], IP(sq)[t],
                                          IP(aq)[t]);
    }
    P(out)[t] = T(sc * acc / double(s)) + CP(lam)[t];
  })
}

}  // extern "C"
