// pyhessk._core_cpu: the C++ CPU engine. Arrays are checked in Python (pyhessk/backends/cpp) and again,
// cheaply, here; they cross as typed C-contiguous buffers (noconvert: a wrong dtype is a TypeError, never
// a cast). Outputs are allocated in Python and filled here. All compute runs with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/registry.h"
#include "common/activations.h"
#include "common/check.h"
#include "common/losses.h"
#include "common/views.h"
#include "cpu/gemm_cpu.h"
#include "cpu/gnh_cpu.h"
#include "cpu/helpers.h"
#include "cpu/linearization_cpu.h"

namespace py = pybind11;
using pyhessk::MlpShape;
using pyhessk::cpu::GnhFactors;
using pyhessk::cpu::Linearization;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

template <typename T>
void expect_shape(const carray<T>& a, std::initializer_list<py::ssize_t> shape, const char* name) {
  bool ok = a.ndim() == py::ssize_t(shape.size());
  int i = 0;
  for (auto s : shape) {
    ok = ok && (s < 0 || a.shape(i) == s);
    ++i;
  }
  if (!ok) {
    std::string want = "(";
    for (auto s : shape) want += (s < 0 ? std::string("k") : std::to_string(s)) + ", ";
    want.replace(want.size() - 2, 2, ")");
    throw std::invalid_argument(std::string(name) + " must have shape " + want);
  }
}

template <typename T>
py::array_t<T> view(py::handle owner, const T* ptr, std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape, ptr, owner);  // a view of engine memory kept alive by its owner
}

// The two layouts products take and return: a block of k parameter vectors (N, k), or k output vectors
// per sample (n, k, d).
enum class Operand { block, outputs };

template <typename T, typename Lin>
void expect_operand(const Lin& lin, const carray<T>& a, Operand kind, py::ssize_t k, const char* name) {
  if (kind == Operand::block)
    expect_shape(a, {py::ssize_t(lin.shape().num_params), k}, name);
  else
    expect_shape(a, {lin.n(), k, lin.d()}, name);
}

// A product binding: checks the operand and the output, then runs method(in, k, out) without the GIL.
template <typename T, typename Lin, typename Method>
auto product(const char* in_name, Operand in_kind, Operand out_kind, Method method) {
  return [=](Lin& self, const carray<T>& in, carray<T>& out) {
    expect_operand(self, in, in_kind, -1, in_name);
    const int k = int(in.shape(1));
    expect_operand(self, out, out_kind, k, "out");
    const T* pi = in.data();
    T* po = out.mutable_data();
    py::gil_scoped_release nogil;
    (self.*method)(pi, k, po);
  };
}

template <typename T>
void bind_dtype(py::module_& m, const char* suffix) {
  using Lin = Linearization<T>;
  const std::string cls = std::string("Linearization") + suffix;
  py::class_<Lin>(m, cls.c_str(), "A fused forward (+ backward) pass over one batch and the products reusing it.")
      .def(py::init([](std::vector<int> sizes, std::vector<int> acts, int loss, double l2, bool mean, bool bias,
                       const carray<T>& theta, const carray<T>& X, const carray<T>& Y, bool backward) {
             MlpShape shape(std::move(sizes), std::move(acts), loss, l2, mean, bias);
             expect_shape(theta, {shape.num_params}, "theta");
             expect_shape(X, {-1, shape.sizes[0]}, "X");
             const int n = int(X.shape(0));
             expect_shape(Y, {n, shape.out_dim()}, "Y");
             const T *pt = theta.data(), *px = X.data(), *py_ = Y.data();
             py::gil_scoped_release nogil;
             return std::make_unique<Lin>(shape, pt, px, py_, n, backward);
           }),
           py::arg("sizes"), py::arg("acts"), py::arg("loss"), py::arg("l2"), py::arg("mean"), py::arg("bias"),
           py::arg("theta").noconvert(), py::arg("X").noconvert(), py::arg("Y").noconvert(), py::arg("backward"))
      .def_property_readonly("loss", &Lin::loss)
      .def_property_readonly("has_grad", &Lin::has_grad)
      .def_property_readonly("n", &Lin::n)
      .def_property_readonly("scale", &Lin::scale)
      .def("backward", [](Lin& self) {
        py::gil_scoped_release nogil;
        self.backward();
      })
      .def("grad", [](py::object self) {
        const Lin& lin = self.cast<const Lin&>();
        if (!lin.has_grad()) throw std::logic_error("the gradient pass has not run");
        return view<T>(self, lin.grad(), {py::ssize_t(lin.shape().num_params)});
      })
      .def("theta", [](py::object self) {
        const Lin& lin = self.cast<const Lin&>();
        return view<T>(self, lin.theta(), {py::ssize_t(lin.shape().num_params)});
      })
      .def("act", [](py::object self, int l) {
        const Lin& lin = self.cast<const Lin&>();
        if (l < 0 || l >= lin.shape().layers()) throw std::out_of_range("act: layer out of range");
        return view<T>(self, lin.act(l), {lin.n(), lin.shape().sizes[l]});
      })
      .def("dphi", [](py::object self, int l) {
        const Lin& lin = self.cast<const Lin&>();
        if (l < 1 || l >= lin.shape().layers()) throw std::out_of_range("dphi: layer out of range");
        return view<T>(self, lin.dphi(l), {lin.n(), lin.shape().sizes[l]});
      })
      .def("output", [](py::object self) {
        const Lin& lin = self.cast<const Lin&>();
        return view<T>(self, lin.output(), {lin.n(), lin.d()});
      })
      .def("aux", [](py::object self) {
        const Lin& lin = self.cast<const Lin&>();
        return view<T>(self, lin.aux(), {lin.n(), lin.d()});
      })
      .def("hvp", product<T, Lin>("V", Operand::block, Operand::block, &Lin::hvp), py::arg("V").noconvert(),
           py::arg("out").noconvert())
      .def("gnvp", product<T, Lin>("V", Operand::block, Operand::block, &Lin::gnvp), py::arg("V").noconvert(),
           py::arg("out").noconvert())
      .def("jvp", product<T, Lin>("V", Operand::block, Operand::outputs, &Lin::jvp), py::arg("V").noconvert(),
           py::arg("out").noconvert())
      .def("vjp", product<T, Lin>("U", Operand::outputs, Operand::block, &Lin::vjp), py::arg("U").noconvert(),
           py::arg("out").noconvert())
      .def("output_hessian", product<T, Lin>("R", Operand::outputs, Operand::outputs, &Lin::output_hessian),
           py::arg("R").noconvert(), py::arg("out").noconvert())
      .def("dense", [](Lin& self, bool hessian, carray<T>& out, int chunk) {
             const py::ssize_t N = py::ssize_t(self.shape().num_params);
             expect_shape(out, {N, N}, "out");
             T* po = out.mutable_data();
             py::gil_scoped_release nogil;
             self.dense(hessian, po, chunk);
           },
           py::arg("hessian"), py::arg("out").noconvert(), py::arg("chunk") = 0)
      .def("empirical_fisher_diagonal", [](Lin& self, carray<T>& out) {
             expect_shape(out, {py::ssize_t(self.shape().num_params)}, "out");
             T* po = out.mutable_data();
             py::gil_scoped_release nogil;
             self.empirical_fisher_diagonal(po);
           },
           py::arg("out").noconvert());

  using Fac = GnhFactors<T>;
  using index_array = py::array_t<int64_t, py::array::c_style>;
  const std::string fac = std::string("GnhFactors") + suffix;
  py::class_<Fac>(m, fac.c_str(), "The entrywise Gauss–Newton precomputation of one linearization (SPEC §3).")
      .def(py::init([](const Lin& lin) {
             py::gil_scoped_release nogil;
             return std::make_unique<Fac>(lin);
           }), py::arg("lin"), py::keep_alive<1, 2>())  // gnvp's carried route reads W_l and φ′_l from lin
      .def("entries", [](const Fac& self, const index_array& rows, const index_array& cols, carray<T>& out) {
            PYHESSK_CHECK(rows.ndim() == 1 && cols.ndim() == 1 && rows.size() == cols.size(),
                          "rows and cols must be 1-D index arrays of equal length");
            expect_shape(out, {rows.size()}, "out");
            const int64_t *pr = rows.data(), *pc = cols.data();
            T* po = out.mutable_data();
            const int64_t mm = rows.size();
            py::gil_scoped_release nogil;
            self.entries(pr, pc, mm, po);
          }, py::arg("rows").noconvert(), py::arg("cols").noconvert(), py::arg("out").noconvert())
      .def("block", [](const Fac& self, const index_array& I, const index_array& J, carray<T>& out) {
            PYHESSK_CHECK(I.ndim() == 1 && J.ndim() == 1, "I and J must be 1-D index arrays");
            expect_shape(out, {I.size(), J.size()}, "out");
            const int64_t *pi = I.data(), *pj = J.data();
            T* po = out.mutable_data();
            const int64_t mi = I.size(), mj = J.size();
            py::gil_scoped_release nogil;
            self.block(pi, mi, pj, mj, po);
          }, py::arg("I").noconvert(), py::arg("J").noconvert(), py::arg("out").noconvert())
      .def("columns", [](const Fac& self, const index_array& J, carray<T>& out) {
            PYHESSK_CHECK(J.ndim() == 1, "J must be a 1-D index array");
            expect_shape(out, {self.num_params(), J.size()}, "out");
            const int64_t* pj = J.data();
            T* po = out.mutable_data();
            const int64_t mm = J.size();
            py::gil_scoped_release nogil;
            self.columns(pj, mm, po);
          }, py::arg("J").noconvert(), py::arg("out").noconvert())
      .def("diagonal", [](const Fac& self, carray<T>& out) {
            expect_shape(out, {self.num_params()}, "out");
            T* po = out.mutable_data();
            py::gil_scoped_release nogil;
            self.diagonal(po);
          }, py::arg("out").noconvert())
      .def("S", [](py::object self, int l) {
        const Fac& fac = self.cast<const Fac&>();
        if (l < 1 || l > fac.shape().layers()) throw std::out_of_range("S: layer out of range");
        return view<T>(self, fac.S_layer(l), {fac.shape().sizes[l], fac.d(), fac.n()});
      })
      .def("AT", [](py::object self, int l) {
        const Fac& fac = self.cast<const Fac&>();
        if (l < 1 || l > fac.shape().layers()) throw std::out_of_range("AT: layer out of range");
        return view<T>(self, fac.AT_layer(l), {fac.shape().sizes[l - 1], fac.n()});
      })
      .def("gnvp", [](Fac& self, const carray<T>& V, carray<T>& out, const py::array_t<uint8_t, py::array::c_style>& carry) {
            expect_shape(V, {self.num_params(), -1}, "V");
            const int k = int(V.shape(1));
            expect_shape(out, {self.num_params(), k}, "out");
            const int L = self.shape().layers();
            const uint8_t* pc = nullptr;
            if (carry.size() > 0) {
              expect_shape(carry, {L}, "carry");
              pc = carry.data();
              PYHESSK_CHECK(pc[L - 1] == 0, "carry: the output layer cannot be carried");
            }
            const T* pv = V.data();
            T* po = out.mutable_data();
            py::gil_scoped_release nogil;
            self.gnvp(pv, k, po, pc);
          }, py::arg("V").noconvert(), py::arg("out").noconvert(), py::arg("carry") = py::array_t<uint8_t>())
      .def("sample", [](const Fac& self, const index_array& rows, const index_array& cols, int64_t s,
                        uint64_t seed, carray<T>& out) {
            PYHESSK_CHECK(rows.ndim() == 1 && cols.ndim() == 1 && rows.size() == cols.size(),
                          "rows and cols must be 1-D index arrays of equal length");
            PYHESSK_CHECK(s >= 1, "the sample count must be at least 1");
            PYHESSK_CHECK(out.ndim() == 1 || out.ndim() == 2, "out must be (m,) or (groups, m)");
            const int64_t groups = out.ndim() == 2 ? out.shape(0) : 1;
            if (out.ndim() == 2)
              expect_shape(out, {groups, rows.size()}, "out");
            else
              expect_shape(out, {rows.size()}, "out");
            const int64_t *pr = rows.data(), *pc = cols.data();
            T* po = out.mutable_data();
            const int64_t mm = rows.size();
            py::gil_scoped_release nogil;
            self.sample(pr, pc, mm, s, seed, po, groups);
          }, py::arg("rows").noconvert(), py::arg("cols").noconvert(), py::arg("s"), py::arg("seed"),
          py::arg("out").noconvert());

  const std::string fwd = std::string("forward") + suffix;
  m.def(fwd.c_str(), [](std::vector<int> sizes, std::vector<int> acts, bool bias, const carray<T>& theta,
                        const carray<T>& X, carray<T>& out) {
        MlpShape shape(std::move(sizes), std::move(acts), 0, 0.0, true, bias);
        expect_shape(theta, {shape.num_params}, "theta");
        expect_shape(X, {-1, shape.sizes[0]}, "X");
        expect_shape(out, {X.shape(0), shape.out_dim()}, "out");
        const T *pt = theta.data(), *px = X.data();
        T* po = out.mutable_data();
        const int n = int(X.shape(0));
        py::gil_scoped_release nogil;
        pyhessk::cpu::forward<T>(shape, pt, px, n, po);
      }, py::arg("sizes"), py::arg("acts"), py::arg("bias"), py::arg("theta").noconvert(), py::arg("X").noconvert(),
      py::arg("out").noconvert(), "The network output f(X; θ) into out (n, d).");
}

template <typename Fn>
Fn* capsule_pointer(const py::capsule& cap) {
  void* ptr = PyCapsule_GetPointer(cap.ptr(), PyCapsule_GetName(cap.ptr()));
  if (!ptr) throw py::error_already_set();
  return reinterpret_cast<Fn*>(ptr);
}

}  // namespace

PYBIND11_MODULE(_core_cpu, m, py::mod_gil_not_used()) {
  m.doc() = "pyhessk's C++ CPU engine (private; use pyhessk.MLP(..., backend='cpp')).";
  m.def("set_blas", [](const py::capsule& sgemm, const py::capsule& dgemm) {
        auto& table = pyhessk::cpu::blas_table();
        table.sgemm = capsule_pointer<pyhessk::cpu::sgemm_fn>(sgemm);
        table.dgemm = capsule_pointer<pyhessk::cpu::dgemm_fn>(dgemm);
        table.sgemm64 = nullptr;
        table.dgemm64 = nullptr;
      }, py::arg("sgemm"), py::arg("dgemm"),
      "Install the sgemm/dgemm function pointers (capsules from scipy.linalg.cython_blas.__pyx_capi__).");
  m.def("set_blas_addresses", [](uintptr_t sgemm, uintptr_t dgemm, bool ilp64) {
        PYHESSK_CHECK(sgemm != 0 && dgemm != 0, "null BLAS function address");
        auto& table = pyhessk::cpu::blas_table();
        if (ilp64) {
          table.sgemm64 = reinterpret_cast<pyhessk::cpu::sgemm64_fn*>(sgemm);
          table.dgemm64 = reinterpret_cast<pyhessk::cpu::dgemm64_fn*>(dgemm);
        } else {
          table.sgemm64 = nullptr;
          table.dgemm64 = nullptr;
          table.sgemm = reinterpret_cast<pyhessk::cpu::sgemm_fn*>(sgemm);
          table.dgemm = reinterpret_cast<pyhessk::cpu::dgemm_fn*>(dgemm);
        }
      }, py::arg("sgemm"), py::arg("dgemm"), py::arg("ilp64"),
      "Install Fortran-interface sgemm/dgemm by address (ilp64: 64-bit integer arguments); takes precedence.");
  pyhessk::bindings::bind_registry_ids(m);
  m.def("build_info", [] {
    py::dict info;
#ifdef _OPENMP
    info["openmp"] = py::int_(_OPENMP);
#else
    info["openmp"] = py::none();
#endif
#ifdef __VERSION__
    info["compiler"] = std::string(__VERSION__);
#endif
    info["version"] = std::string(PYHESSK_VERSION);
    return info;
  }, "How this module was built: OpenMP version (or None), compiler, pyhessk version.");
  m.def("entry_helpers", [] {
    py::dict info;
    info["threads"] = pyhessk::cpu::Helpers::max_threads();
    info["helped"] = pyhessk::cpu::Helpers::helped();
    return info;
  }, "The GNH entry loops' threads (OpenMP's count) and how many items helper threads have run so far.");
  bind_dtype<float>(m, "F32");
  bind_dtype<double>(m, "F64");
}
