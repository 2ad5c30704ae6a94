"""Thin Python side of the C++ engine: allocate outputs with NumPy, call ``_core_cpu``, no math here.

The GNH precomputation and gathers run through the reference engine's NumPy code on this engine's caches
(activations, φ′, outputs), which it exposes as views of its own memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cython_blas

from ... import _spec
from .._base import BackendBase, ModelSpec
from ..numpy.mlp import Lin as NumpyLin
from ..numpy.mlp import NumpyBackend

Array = np.ndarray


@dataclass
class CppLin:
    """A linearization held by the C++ engine; ``core`` owns the caches and the product workspace."""

    model: ModelSpec
    core: Any
    n: int
    dtype: np.dtype
    loss: float

    @property
    def grad(self) -> Array | None:
        return self.core.grad() if self.core.has_grad else None


@dataclass
class CppRForward:
    output: Array  # R{f} = J V: (n, k, d)


class CppBackend(BackendBase):
    """Every primitive of the engine protocol in C++; hvp/gnvp/jvp/vjp are single fused calls."""

    name = "cpp"

    def __init__(self, core_module: Any) -> None:
        self._core = core_module
        capi = cython_blas.__pyx_capi__
        core_module.set_blas(capi["sgemm"], capi["dgemm"])
        self._ref = NumpyBackend()

    def _cls(self, dtype: np.dtype) -> Any:
        return self._core.LinearizationF32 if dtype == np.float32 else self._core.LinearizationF64

    @staticmethod
    def _ids(model: ModelSpec) -> tuple[list[int], int]:
        acts = [_spec.ACTIVATION_BY_NAME[a].id for a in model.activations]
        return acts, _spec.LOSS_BY_NAME[model.loss].id

    # ---- passes ----------------------------------------------------------------------------------
    def forward(self, model: ModelSpec, theta: Array, X: Array) -> Array:
        out = np.empty((X.shape[0], model.sizes[-1]), dtype=theta.dtype)
        fn = self._core.forwardF32 if theta.dtype == np.float32 else self._core.forwardF64
        fn(list(model.sizes), self._ids(model)[0], model.bias, theta, X, out)
        return out

    def linearize(self, model: ModelSpec, theta: Array, X: Array, T: Array, backward: bool = True) -> CppLin:
        acts, loss = self._ids(model)
        core = self._cls(theta.dtype)(list(model.sizes), acts, loss, model.l2, model.reduction == "mean",
                                      model.bias, theta, X, np.ascontiguousarray(T, dtype=theta.dtype), backward)
        return CppLin(model, core, X.shape[0], theta.dtype, core.loss)

    def backward(self, lin: CppLin) -> None:
        lin.core.backward()

    def hvp(self, lin: CppLin, V: Array) -> Array:
        out = np.empty_like(V)
        lin.core.hvp(V, out)
        return out

    def gnvp(self, lin: CppLin, V: Array) -> Array:
        out = np.empty_like(V)
        lin.core.gnvp(V, out)
        return out

    def jvp(self, lin: CppLin, V: Array) -> Array:
        out = np.empty((lin.n, V.shape[1], lin.model.sizes[-1]), dtype=V.dtype)
        lin.core.jvp(V, out)
        return out

    def vjp(self, lin: CppLin, U: Array) -> Array:
        out = np.empty((lin.model.num_params, U.shape[1]), dtype=U.dtype)
        lin.core.vjp(np.ascontiguousarray(U), out)
        return out

    # The separate R-passes of the protocol; the products above fuse them inside one call.
    def r_forward(self, lin: CppLin, V: Array) -> CppRForward:
        return CppRForward(self.jvp(lin, V))

    def r_backward(self, lin: CppLin, rf: CppRForward, V: Array) -> Array:
        return self.hvp(lin, V)

    def output_hessian(self, lin: CppLin, R: Array) -> Array:
        R = np.ascontiguousarray(R)
        out = np.empty_like(R)
        lin.core.output_hessian(R, out)
        return out

    def gn_backward(self, lin: CppLin, U: Array, V: Array | None = None) -> Array:
        out = self.vjp(lin, U)
        if V is not None and lin.model.l2:
            out += lin.model.l2 * lin.model.weight_mask(out.dtype)[:, None] * V
        return out

    # ---- entrywise Gauss–Newton ----------------------------------------------------------------
    def _numpy_view(self, lin: CppLin) -> NumpyLin:
        core, model = lin.core, lin.model
        L = model.num_layers
        theta = core.theta()
        Ws = [model.layer_views(theta, l)[0] for l in range(1, L + 1)]
        aux = core.aux()
        return NumpyLin(model, theta, Ws, [None] * L, [core.act(l) for l in range(L)],
                        [core.dphi(l) for l in range(1, L)], [None] * (L - 1), core.output(),
                        None if model.loss == "mse" else aux, aux, core.scale, lin.loss, lin.n)

    def gnh_precompute(self, lin: CppLin) -> Any:
        return self._ref.gnh_precompute(self._numpy_view(lin))

    def gnh_entries(self, fac: Any, rows: Array, cols: Array) -> Array:
        return self._ref.gnh_entries(fac, rows, cols)

    def gnh_block(self, fac: Any, I: Array, J: Array) -> Array:
        return self._ref.gnh_block(fac, I, J)

    def gnh_columns(self, fac: Any, J: Array) -> Array:
        return self._ref.gnh_columns(fac, J)

    def gnh_diagonal(self, fac: Any) -> Array:
        return self._ref.gnh_diagonal(fac)

    def gnh_sample(self, fac: Any, rows: Array, cols: Array, s: int, seed: int | None) -> Array:
        return self._ref.gnh_sample(fac, rows, cols, s, seed)
