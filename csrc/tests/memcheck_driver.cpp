// A standalone driver of the C++ CPU engine for memory checkers (valgrind memcheck, sanitizers), with no
// Python in the process: plain reference GEMMs stand in for SciPy's BLAS. It exercises every activation,
// loss, both dtypes and blocks of k = 1 and k = 3 directions, checks symmetry vᵀHw = wᵀHv, compares J v
// against central differences of the forward pass, and runs blocks in chunks of samples against single
// directions, and assembles the dense H and G against block products. Built with -fopenmp, it also runs
// the GNH entry loops with helper threads against one thread. See the README for the command.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "common/activations.h"
#include "common/losses.h"
#include "common/views.h"
#include "cpu/gemm_cpu.h"
#include "cpu/gnh_cpu.h"
#include "cpu/helpers.h"
#include "cpu/linearization_cpu.h"
#include "cpu/pool.h"

namespace {

// |a − b| ≤ bound, false for NaN: every check below fails on a NaN result.
bool within(double a, double b, double bound) { return std::fabs(a - b) <= bound; }

// A random problem, drawn in this order: θ ~ N(0, 1/4), X and then targets valid for the loss (one-hot for
// softmax cross-entropy, 0.3 for sigmoid cross-entropy, N(0, 1) otherwise), then directions V ~ N(0, 1).
template <typename T>
void random_problem(std::mt19937& gen, int n, int d, int loss, std::vector<T>& theta, std::vector<T>& X,
                    std::vector<T>& Y, std::vector<T>& V) {
  std::normal_distribution<double> nd;
  for (auto& t : theta) t = T(0.5 * nd(gen));
  for (auto& x : X) x = T(nd(gen));
  for (int s = 0; s < n; ++s)
    for (int j = 0; j < d; ++j) Y[s * d + j] = loss == 1 ? T(j == s % d) : (loss == 2 ? T(0.3) : T(nd(gen)));
  for (auto& v : V) v = T(nd(gen));
}

// Column-major reference GEMM with the Fortran BLAS signature.
template <typename T>
void ref_gemm(char* ta, char* tb, int* m, int* n, int* k, T* alpha, T* A, int* lda, T* B, int* ldb, T* beta, T* C,
              int* ldc) {
  for (int j = 0; j < *n; ++j)
    for (int i = 0; i < *m; ++i) {
      T acc = 0;
      for (int p = 0; p < *k; ++p) {
        const T a = (*ta == 'N') ? A[i + p * *lda] : A[p + i * *lda];
        const T b = (*tb == 'N') ? B[p + j * *ldb] : B[j + p * *ldb];
        acc += a * b;
      }
      C[i + j * *ldc] = *alpha * acc + (*beta == T(0) ? T(0) : *beta * C[i + j * *ldc]);
    }
}

template <typename T>
int run(int act, int loss, unsigned seed) {
  using pyhessk::MlpShape;
  MlpShape shape({3, 5, 4, 2}, {act, act}, loss, 0.1, true, true);
  const int n = 6, d = 2;
  const int64_t N = shape.num_params;
  std::mt19937 gen(seed);
  std::vector<T> theta(N), X(n * 3), Y(n * d), V(N * 3), out(N * 3), out2(N * 3), jv(n * 3 * d);
  random_problem(gen, n, d, loss, theta, X, Y, V);
  pyhessk::cpu::Linearization<T> lin(shape, theta.data(), X.data(), Y.data(), n, false);
  lin.backward();
  for (int k : {1, 3}) {
    lin.hvp(V.data(), k, out.data());
    lin.gnvp(V.data(), k, out2.data());
    lin.jvp(V.data(), k, jv.data());
    lin.vjp(jv.data(), k, out2.data());
  }
  // symmetry of H on two single directions
  std::vector<T> v(N), w(N), Hv(N), Hw(N);
  for (int64_t i = 0; i < N; ++i) v[i] = V[i * 3], w[i] = V[i * 3 + 1];
  lin.hvp(v.data(), 1, Hv.data());
  lin.hvp(w.data(), 1, Hw.data());
  double a = 0, b = 0, scale = 0;
  for (int64_t i = 0; i < N; ++i) a += double(w[i]) * Hv[i], b += double(v[i]) * Hw[i], scale += std::fabs(double(w[i]) * Hv[i]);
  const double tol = sizeof(T) == 8 ? 1e-12 : 1e-4;
  if (!within(a, b, tol * scale)) {
    std::printf("symmetry failed: act %d loss %d: %g vs %g\n", act, loss, a, b);
    return 1;
  }
  // GNH factors: entries, block, columns, diagonal, the factored product and the sampler agree
  {
    pyhessk::cpu::GnhFactors<T> fac(lin);
    std::vector<int64_t> idx(N);
    for (int64_t i = 0; i < N; ++i) idx[i] = i;
    std::vector<T> blk(N * N), cols(N * N), diag(N), ent(N), est(N);
    fac.block(idx.data(), N, idx.data(), N, blk.data());
    fac.columns(idx.data(), N, cols.data());
    fac.diagonal(diag.data());
    fac.entries(idx.data(), idx.data(), N, ent.data());
    fac.sample(idx.data(), idx.data(), N, 5, 42u, est.data());
    // the factored product on the first direction and on a block of 3 agrees with the plain one
    // with no layer carried, then with every hidden layer carried (W_{l+1} and φ′_l read from lin)
    std::vector<uint8_t> all(lin.shape().layers(), 1);
    all.back() = 0;
    for (const uint8_t* carry : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(all.data())})
      for (int k : {1, 3}) {
        lin.gnvp(V.data(), k, out.data());
        fac.gnvp(V.data(), k, out2.data(), carry);
        for (int64_t i = 0; i < N * k; ++i)
          if (!within(out[i], out2[i], tol * 100 * (1 + std::fabs(double(out[i]))))) {
            std::printf("factored gnvp mismatch: act %d loss %d k %d carry %d at %ld\n", act, loss, k, carry != nullptr,
                        long(i));
            return 1;
          }
      }
    double gmax = 0;
    for (auto g : blk) gmax = std::max(gmax, std::fabs(double(g)));
    for (int64_t i = 0; i < N; ++i) {
      const double e = std::fabs(double(blk[i * N + i]) - diag[i]) + std::fabs(double(ent[i]) - diag[i]);
      if (!(e <= tol * 100 * gmax) || !std::isfinite(double(est[i]))) {
        std::printf("gnh diagonal mismatch: act %d loss %d at %ld\n", act, loss, long(i));
        return 1;
      }
      for (int64_t j = 0; j < N; ++j)
        if (!within(blk[i * N + j], cols[i * N + j], tol * 100 * gmax)) {
          std::printf("gnh block/column mismatch: act %d loss %d\n", act, loss);
          return 1;
        }
    }
  }
  // the dense H and G, in one chunk and in chunks of 4 samples, against block products with the identity
  {
    std::vector<T> eye(N * N, T(0)), prod(N * N), dense(N * N);
    for (int64_t i = 0; i < N; ++i) eye[i * N + i] = T(1);
    for (bool hessian : {true, false}) {
      if (hessian) lin.hvp(eye.data(), int(N), prod.data());
      else lin.gnvp(eye.data(), int(N), prod.data());
      double pmax = 0;
      for (auto p : prod) pmax = std::max(pmax, std::fabs(double(p)));
      for (int chunk : {0, 4}) {
        lin.dense(hessian, dense.data(), chunk);
        for (int64_t i = 0; i < N * N; ++i)
          if (!within(dense[i], prod[i], tol * 100 * pmax)) {
            std::printf("dense %s mismatch: act %d loss %d chunk %d at %ld\n", hessian ? "H" : "G", act, loss, chunk,
                        long(i));
            return 1;
          }
      }
    }
  }
  // J v against central differences of the forward pass (float64 only)
  if (sizeof(T) == 8) {
    const double h = 1e-6;
    std::vector<T> tp(theta), tm(theta), fp(n * d), fm(n * d);
    for (int64_t i = 0; i < N; ++i) tp[i] += T(h * v[i]), tm[i] -= T(h * v[i]);
    pyhessk::cpu::forward<T>(shape, tp.data(), X.data(), n, fp.data());
    pyhessk::cpu::forward<T>(shape, tm.data(), X.data(), n, fm.data());
    lin.jvp(v.data(), 1, jv.data());
    for (int i = 0; i < n * d; ++i)
      if (!within((fp[i] - fm[i]) / (2 * h), jv[i], 1e-6 * (1 + std::fabs(jv[i])))) {
        std::printf("jvp failed: act %d loss %d at %d\n", act, loss, i);
        return 1;
      }
  }
  return 0;
}

// A batch large enough that a block of k = 3 runs in chunks of samples while single directions do not:
// every product of the block equals its three single-direction products.
int run_chunked(int act, int loss) {
  using pyhessk::MlpShape;
  using T = double;
  MlpShape shape({3, 5, 4, 2}, {act, act}, loss, 0.1, true, true);
  const int n = 3001, d = 2, k = 3;
  const int64_t N = shape.num_params;
  std::mt19937 gen(7u + act);
  std::vector<T> theta(N), X(n * 3), Y(n * d), V(N * k), blk(N * k), one(N), v(N), jb(n * k * d), j1(n * d);
  random_problem(gen, n, d, loss, theta, X, Y, V);
  pyhessk::cpu::Linearization<T> lin(shape, theta.data(), X.data(), Y.data(), n, true);
  for (int prod = 0; prod < 3; ++prod) {
    if (prod == 0) lin.hvp(V.data(), k, blk.data());
    if (prod == 1) lin.gnvp(V.data(), k, blk.data());
    if (prod == 2) lin.jvp(V.data(), k, jb.data());
    for (int j = 0; j < k; ++j) {
      for (int64_t i = 0; i < N; ++i) v[i] = V[i * k + j];
      if (prod == 0) lin.hvp(v.data(), 1, one.data());
      if (prod == 1) lin.gnvp(v.data(), 1, one.data());
      if (prod == 2) {
        lin.jvp(v.data(), 1, j1.data());
        for (int s = 0; s < n; ++s)
          for (int c = 0; c < d; ++c)
            if (!within(jb[(int64_t(s) * k + j) * d + c], j1[s * d + c], 1e-10 * (1 + std::fabs(j1[s * d + c])))) {
              std::printf("chunked jvp mismatch: act %d loss %d\n", act, loss);
              return 1;
            }
        continue;
      }
      for (int64_t i = 0; i < N; ++i)
        if (!within(blk[i * k + j], one[i], 1e-10 * (1 + std::fabs(one[i])))) {
          std::printf("chunked product %d mismatch: act %d loss %d\n", prod, act, loss);
          return 1;
        }
    }
  }
  return 0;
}

// The buffer pool: size classes, and a freed block served again to the next request of its class.
int check_pool() {
  using pyhessk::cpu::BufferPool;
  auto& pool = BufferPool::instance();
  const bool classes = BufferPool::size_class(100) == 0 && BufferPool::size_class(4096) == 4096 &&
                       BufferPool::size_class(5000) == 6144 && BufferPool::size_class(6145) == 8192 &&
                       BufferPool::size_class(BufferPool::kMaxBytes + 1) == 0;
  void* a = pool.take(10000);
  static_cast<char*>(a)[9999] = 1;  // the block holds the whole request (ASan checks)
  pool.give(a, 10000);
  void* b = pool.take(9000);  // same class (12288 bytes)
  const bool reused = a == b;
  pool.give(b, 9000);
  pyhessk::cpu::buffer<double> v(3000, 1.0);
  v.resize(7000, 2.0);
  const bool grown = v[2999] == 1.0 && v[6999] == 2.0;
  if (!classes || !reused || !grown) {
    std::printf("buffer pool: classes %d reused %d grown %d\n", classes, reused, grown);
    return 1;
  }
  return 0;
}

}  // namespace

// The exact and sampled entry loops with enough work to share (cpu/helpers.h) give the same numbers with
// the helper threads as on one thread; repeated until a helper has run some entries (up to 200 rounds).
// Without OpenMP there is one thread and nothing to compare.
int check_helpers() {
#if defined(_OPENMP)
  using pyhessk::MlpShape;
  MlpShape shape({8, 16, 10}, {0}, 1, 0.0, true, true);
  const int n = 512, d = 10;
  const int64_t N = shape.num_params;
  std::mt19937 gen(7);
  std::vector<double> theta(N), X(n * 8), Y(n * d), V(N);
  random_problem(gen, n, d, 1, theta, X, Y, V);
  pyhessk::cpu::Linearization<double> lin(shape, theta.data(), X.data(), Y.data(), n, false);
  lin.backward();
  pyhessk::cpu::GnhFactors<double> fac(lin);
  std::vector<int64_t> rows(N), cols(N);
  for (int64_t i = 0; i < N; ++i) rows[i] = i, cols[i] = (i * 7) % N;
  auto calls = [&](std::vector<double>& out) {
    fac.entries(rows.data(), cols.data(), N, out.data());
    fac.sample(rows.data(), cols.data(), N, 64, 9u, out.data() + N);
  };
  const int threads = omp_get_max_threads();
  std::vector<double> one(2 * N), shared(2 * N);
  omp_set_num_threads(1);
  calls(one);
  omp_set_num_threads(std::max(threads, 2));
  const int64_t before = pyhessk::cpu::Helpers::helped();
  for (int round = 0; round < 200 && pyhessk::cpu::Helpers::helped() == before; ++round) {
    calls(shared);
    if (shared != one) {
      std::printf("helpers: entries differ from one thread's\n");
      return 1;
    }
  }
  if (pyhessk::cpu::Helpers::helped() == before) std::printf("helpers: no helper joined in 200 rounds\n");
  // an exception in one chunk reaches the caller, after every helper has left the job, whichever thread
  // ran that chunk; the job is withdrawn, so the next loop shares again and gives the same numbers
  for (int round = 0; round < 20; ++round) {
    std::vector<double> sink(4096);
    bool caught = false;
    try {
      pyhessk::cpu::Helpers::run(4096, 1e4, [&](pyhessk::cpu::Helpers::Claim& next) {
        for (int64_t b, e; next(b, e);)
          for (int64_t t = b; t < e; ++t) {
            if (t == 3000 - 7 * round) throw std::runtime_error("chunk failed");
            double x = double(t);
            for (int r = 0; r < 2000; ++r) x = std::sqrt(x + 1.0);
            sink[t] = x;
          }
      });
    } catch (const std::runtime_error&) {
      caught = true;
    }
    if (!caught) {
      std::printf("helpers: an exception in a chunk did not reach the caller\n");
      return 1;
    }
  }
  calls(shared);
  omp_set_num_threads(threads);
  if (shared != one) {
    std::printf("helpers: entries differ from one thread's after the exceptions\n");
    return 1;
  }
#endif
  return 0;
}

int main() {
  auto& table = pyhessk::cpu::blas_table();
  table.sgemm = &ref_gemm<float>;
  table.dgemm = &ref_gemm<double>;
  int failures = 0;
  for (int act = 0; act < pyhessk::kNumActivations; ++act)
    for (int loss = 0; loss < pyhessk::kNumLosses; ++loss) {
      failures += run<double>(act, loss, 10u * act + loss);
      failures += run<float>(act, loss, 10u * act + loss);
    }
  for (int act : {1, 3}) failures += run_chunked(act, act == 1 ? 1 : 0);
  failures += check_pool();
  failures += check_helpers();
  std::printf("%s: %d failures\n", failures ? "FAILED" : "ok", failures);
  return failures ? 1 : 0;
}
