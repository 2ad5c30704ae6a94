// The registry ids of the compiled activation and loss enums, bound once for every extension module; the
// Python side checks them against pyhessk._spec at import.
#pragma once
#include <pybind11/pybind11.h>

#include "common/activations.h"
#include "common/losses.h"

namespace pyhessk::bindings {

inline void bind_registry_ids(pybind11::module_& m) {
  namespace py = pybind11;
  m.def("activation_ids", [] {
    using pyhessk::Act;
    return py::dict(py::arg("identity") = int(Act::identity), py::arg("tanh") = int(Act::tanh),
                    py::arg("sigmoid") = int(Act::sigmoid), py::arg("relu") = int(Act::relu),
                    py::arg("leaky_relu") = int(Act::leaky_relu), py::arg("softplus") = int(Act::softplus),
                    py::arg("gelu") = int(Act::gelu), py::arg("silu") = int(Act::silu), py::arg("sin") = int(Act::sin));
  }, "The ids of the compiled activation enum (must equal pyhessk._spec).");
  m.def("loss_ids", [] {
    using pyhessk::Loss;
    return py::dict(py::arg("mse") = int(Loss::mse),
                    py::arg("softmax_cross_entropy") = int(Loss::softmax_cross_entropy),
                    py::arg("sigmoid_cross_entropy") = int(Loss::sigmoid_cross_entropy));
  }, "The ids of the compiled loss enum (must equal pyhessk._spec).");
}

}  // namespace pyhessk::bindings
