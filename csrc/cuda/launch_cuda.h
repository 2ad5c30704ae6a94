// Host interface of the nvcc-compiled kernels (pyhessk._core_cuda). Free of CUDA headers, so the pybind11
// binding compiles with the host compiler alone. Arguments cross as tagged values; pointers carry their
// element type so each one is checked against the kernel parameter it lands in.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace pyhessk {
namespace cuda {

// A CUDA runtime, cuBLAS or launch failure (→ pyhessk.CudaError, a RuntimeError).
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Elem : int { none = 0, f32 = 1, f64 = 2, i64 = 3 };

struct KernelArg {
  enum class Kind : int { integer, real, pointer } kind = Kind::integer;
  long long i = 0;           // integer value (two's complement of u when it exceeds 2^63 − 1)
  unsigned long long u = 0;  // the same integer, unsigned (seeds)
  double s = 0;              // real scalar
  void* p = nullptr;         // device pointer (null allowed where the kernel accepts it)
  Elem elem = Elem::none;    // element type of p
  long long size = 0;        // elements behind p
};

// Launches kernel `name` instantiated for dtype (0 float, 1 double) and tag (activation or loss id, −1 for
// none) on `stream` with `blocks` × `threads`; args are the kernel's parameters in order. Throws
// std::invalid_argument on an unknown kernel or mismatched arguments, CudaError on a launch failure.
void launch(const std::string& name, int dtype, int tag, long long blocks, int threads, void* stream,
            const std::vector<KernelArg>& args);

std::vector<std::string> kernel_names();

// Row-major C (M × N) = alpha op(A) op(B) + beta C through cuBLAS on `stream` (the calling device's handle).
// dtype 0 float / 1 double; allow_tf32 lets float32 GEMMs use TF32 tensor cores (off: full float32).
// batch > 1: `batch` such products, operand b starting sA·b, sB·b, sC·b elements on (strided batched;
// a stride may be 0 to share an operand).
void gemm(bool ta, bool tb, int M, int N, int K, double alpha, const void* A, int lda, const void* B, int ldb,
          double beta, void* C, int ldc, int dtype, void* stream, bool allow_tf32, int batch = 1,
          long long sA = 0, long long sB = 0, long long sC = 0);

// Device and pointer checks: the device a pointer belongs to (CudaError if it is not device memory).
int pointer_device(const void* p);
int current_device();

// CUDA runtime and cuBLAS versions this module was built with and runs on, and the compiled architectures.
std::vector<std::pair<std::string, std::string>> build_info();

}  // namespace cuda
}  // namespace pyhessk
