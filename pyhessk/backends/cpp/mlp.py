"""Thin Python side of the C++ engine: allocate outputs with NumPy, call ``_core_cpu``, no math here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ... import _spec
from .._base import BackendBase, ModelSpec
from . import _blas

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
class CppFactors:
    """The C++ GNH precomputation (S_l, A_{l−1}ᵀ, ν_l owned by ``core``)."""

    core: Any
    dtype: np.dtype
    num_params: int


@dataclass
class CppRForward:
    output: Array  # R{f} = J V: (n, k, d)


class CppBackend(BackendBase):
    """Every primitive of the engine protocol in C++; hvp/gnvp/jvp/vjp are single fused calls."""

    name = "cpp"

    def __init__(self, core_module: Any) -> None:
        self._core = core_module
        self.blas = _blas.install(core_module)

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

    def dense_curvature(self, lin: CppLin, kind: str) -> Array:
        N = lin.model.num_params
        out = np.empty((N, N), dtype=lin.dtype)
        lin.core.dense(kind == "hessian", out)
        return out

    def empirical_fisher_diagonal(self, lin: CppLin) -> Array:
        out = np.empty(lin.model.num_params, dtype=lin.dtype)
        lin.core.empirical_fisher_diagonal(out)
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

    # ---- entrywise Gauss–Newton (compiled gathers, SPEC §3) --------------------------------------
    def gnh_precompute(self, lin: CppLin) -> CppFactors:
        cls = self._core.GnhFactorsF32 if lin.dtype == np.float32 else self._core.GnhFactorsF64
        return CppFactors(cls(lin.core), lin.dtype, lin.model.num_params)

    def gnh_entries(self, fac: CppFactors, rows: Array, cols: Array) -> Array:
        out = np.empty(rows.size, dtype=fac.dtype)
        fac.core.entries(rows, cols, out)
        return out

    def gnh_block(self, fac: CppFactors, I: Array, J: Array) -> Array:
        out = np.empty((I.size, J.size), dtype=fac.dtype)
        fac.core.block(I, J, out)
        return out

    def gnh_columns(self, fac: CppFactors, J: Array) -> Array:
        out = np.empty((fac.num_params, J.size), dtype=fac.dtype)
        fac.core.columns(J, out)
        return out

    def gnh_diagonal(self, fac: CppFactors) -> Array:
        out = np.empty(fac.num_params, dtype=fac.dtype)
        fac.core.diagonal(out)
        return out

    def gnh_layer_factors(self, fac: CppFactors, l: int) -> tuple[Array, Array]:
        S, AT = fac.core.S(l), fac.core.AT(l)
        S.flags.writeable = AT.flags.writeable = False  # views of engine memory
        return S.transpose(0, 2, 1), AT.T

    def gnh_gnvp(self, fac: CppFactors, V: Array, carry: Sequence[bool] | None = None) -> Array:
        out = np.empty_like(V)
        fac.core.gnvp(V, out, np.asarray(carry if carry else (), dtype=np.uint8))
        return out

    def gnh_sample(self, fac: CppFactors, rows: Array, cols: Array, s: int, seed: int | None) -> Array:
        seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        out = np.empty(rows.size, dtype=fac.dtype)
        fac.core.sample(rows, cols, s, seed, out)
        return out

    def gnh_sample_groups(self, fac: CppFactors, rows: Array, cols: Array, s: int, groups: int, seed: int | None) -> Array:
        seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        out = np.empty((groups, rows.size), dtype=fac.dtype)
        fac.core.sample(rows, cols, s, seed, out)
        return out
