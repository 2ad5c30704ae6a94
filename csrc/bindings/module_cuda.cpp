// pyhessk._core_cuda: the CUDA kernels and cuBLAS GEMMs compiled ahead of time with nvcc. The pass
// orchestration is Python's (pyhessk/backends/cuda/_engine.py, shared with the NVRTC path); this module
// launches one kernel or one GEMM per call on the stream it is given and never synchronises.
// Arrays cross as objects exposing __cuda_array_interface__ (CuPy, PyTorch, Numba): pointer, typestr and
// shape are read and checked here (C-contiguous, known element type, enough elements, device memory on the
// current device), never taken as bare integers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/registry.h"
#include "common/activations.h"
#include "common/losses.h"
#include "cuda/launch_cuda.h"

namespace py = pybind11;
using pyhessk::cuda::Elem;
using pyhessk::cuda::KernelArg;

namespace {

struct DeviceArray {
  void* ptr = nullptr;
  Elem elem = Elem::none;
  long long size = 0;
};

Elem elem_from_typestr(const std::string& t) {
  if (t == "<f4") return Elem::f32;
  if (t == "<f8") return Elem::f64;
  if (t == "<i8") return Elem::i64;
  return Elem::none;
}

DeviceArray device_array(const py::handle& obj, const char* name) {
  if (!py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) + " must expose __cuda_array_interface__ (a CuPy array)");
  const py::dict cai = obj.attr("__cuda_array_interface__");
  DeviceArray a;
  a.elem = elem_from_typestr(cai["typestr"].cast<std::string>());
  if (a.elem == Elem::none)
    throw py::type_error(std::string(name) + ": unsupported element type " + cai["typestr"].cast<std::string>());
  const auto shape = cai["shape"].cast<std::vector<long long>>();
  a.size = 1;
  for (long long s : shape) a.size *= s;
  if (cai.contains("strides") && !cai["strides"].is_none()) {  // allowed only if it equals C order
    const auto strides = cai["strides"].cast<std::vector<long long>>();
    const long long item = a.elem == Elem::f32 ? 4 : 8;
    long long expect = item;
    for (size_t i = shape.size(); i-- > 0;) {
      if (shape[i] > 1 && strides[i] != expect)
        throw py::value_error(std::string(name) + " must be C-contiguous");
      expect *= shape[i];
    }
  }
  const py::tuple data = cai["data"];
  a.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  if (!a.ptr && a.size > 0) throw py::value_error(std::string(name) + " has a null data pointer");
  if (a.ptr && pyhessk::cuda::pointer_device(a.ptr) != pyhessk::cuda::current_device())
    throw py::value_error(std::string(name) + " lives on another device than the current one");
  return a;
}

KernelArg to_arg(const py::handle& obj, size_t pos) {
  KernelArg a;
  if (obj.is_none()) {
    a.kind = KernelArg::Kind::pointer;
    return a;
  }
  if (py::isinstance<py::bool_>(obj)) throw py::type_error("kernel argument " + std::to_string(pos) + " is a bool");
  if (py::isinstance<py::int_>(obj)) {
    a.kind = KernelArg::Kind::integer;
    const py::int_ v = py::reinterpret_borrow<py::int_>(obj);
    if (py::int_(v) < py::int_(0)) {
      a.i = v.cast<long long>();
      a.u = static_cast<unsigned long long>(a.i);
    } else {
      a.u = v.cast<unsigned long long>();
      a.i = static_cast<long long>(a.u);
    }
    return a;
  }
  if (py::isinstance<py::float_>(obj)) {
    a.kind = KernelArg::Kind::real;
    a.s = obj.cast<double>();
    return a;
  }
  const std::string label = "kernel argument " + std::to_string(pos);
  const DeviceArray d = device_array(obj, label.c_str());
  a.kind = KernelArg::Kind::pointer;
  a.p = d.ptr;
  a.elem = d.elem;
  a.size = d.size;
  return a;
}

void need_elements(const DeviceArray& a, long long rows, long long cols, long long ld, int batch, long long stride,
                   const char* name) {
  if (stride < 0) throw py::value_error(std::string("gemm: the batch stride of ") + name + " is negative");
  if (rows == 0 || cols == 0 || batch == 0) return;
  if (ld < cols || a.size < (batch - 1) * stride + (rows - 1) * ld + cols)
    throw py::value_error(std::string("gemm: ") + name +
                          " is too small for its shape, leading dimension and batch");
}

}  // namespace

PYBIND11_MODULE(_core_cuda, m, py::mod_gil_not_used()) {
  m.doc() = "pyhessk's nvcc-compiled CUDA kernels and cuBLAS GEMMs (private; the 'cuda' engine uses it).";
  py::register_exception<pyhessk::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError);

  m.def("launch", [](const std::string& name, int dtype, int tag, long long total, long long blocks, int threads,
                     uintptr_t stream, const py::list& args) {
        (void)total;  // part of args for elementwise kernels; kept in the signature for error messages
        std::vector<KernelArg> converted;
        converted.reserve(args.size());
        for (size_t i = 0; i < args.size(); ++i) converted.push_back(to_arg(args[i], i));
        py::gil_scoped_release nogil;
        pyhessk::cuda::launch(name, dtype, tag, blocks, threads, reinterpret_cast<void*>(stream), converted);
      }, py::arg("name"), py::arg("dtype"), py::arg("tag"), py::arg("total"), py::arg("blocks"), py::arg("threads"),
      py::arg("stream"), py::arg("args"),
      "Launch one kernel of csrc/cuda/kernels (dtype 0 float / 1 double, tag −1 for none) on a stream.");

  m.def("gemm", [](bool ta, bool tb, int M, int N, int K, double alpha, const py::object& A, int lda,
                   const py::object& B, int ldb, double beta, const py::object& C, int ldc, uintptr_t stream,
                   bool allow_tf32, int batch, long long sA, long long sB, long long sC) {
        const DeviceArray a = device_array(A, "A"), b = device_array(B, "B"), c = device_array(C, "C");
        if (a.elem != c.elem || b.elem != c.elem || c.elem == Elem::i64)
          throw py::type_error("gemm: A, B and C must share one float dtype");
        if (batch < 0) throw py::value_error("gemm: negative batch");
        need_elements(a, ta ? K : M, ta ? M : K, lda, batch, sA, "A");
        need_elements(b, tb ? N : K, tb ? K : N, ldb, batch, sB, "B");
        need_elements(c, M, N, ldc, batch, sC, "C");
        const int dtype = c.elem == Elem::f32 ? 0 : 1;
        py::gil_scoped_release nogil;
        pyhessk::cuda::gemm(ta, tb, M, N, K, alpha, a.ptr, lda, b.ptr, ldb, beta, c.ptr, ldc, dtype,
                            reinterpret_cast<void*>(stream), allow_tf32, batch, sA, sB, sC);
      }, py::arg("ta"), py::arg("tb"), py::arg("M"), py::arg("N"), py::arg("K"), py::arg("alpha"), py::arg("A"),
      py::arg("lda"), py::arg("B"), py::arg("ldb"), py::arg("beta"), py::arg("C"), py::arg("ldc"), py::arg("stream"),
      py::arg("allow_tf32"), py::arg("batch") = 1, py::arg("sA") = 0, py::arg("sB") = 0, py::arg("sC") = 0,
      "Row-major C = alpha op(A) op(B) + beta C with cuBLAS on a stream; batch > 1: strided batched, operand b "
      "starting sA·b, sB·b, sC·b elements on.");

  m.def("kernel_names", &pyhessk::cuda::kernel_names, "The kernels this module instantiates.");
  m.def("build_info", [] {
    py::dict info;
    for (const auto& kv : pyhessk::cuda::build_info()) info[py::str(kv.first)] = kv.second;
    return info;
  }, "CUDA runtime/driver and cuBLAS versions, compiled architectures, pyhessk version.");
  pyhessk::bindings::bind_registry_ids(m);
}
