"""The GPU engine's passes: GEMMs and fused kernels launched through a kernel provider.

The order of GEMMs and epilogues is that of the C++ CPU engine (ALGORITHMS.md §10): forward 1 GEMM per
layer, gradient 2 (first layer 1), R-forward 2/1, R-backward 4/1, Gauss–Newton backward 2/1, each followed
by one fused kernel. All buffers are flat 1-D device arrays in the C++ engine's layouts; a block of k
directions keeps its R-quantities as (n, k, n_l), so each product with W_l is one GEMM over n·k rows.

A provider (``_providers``) supplies the array module, kernel launches and row-major GEMMs on the current
stream: NVRTC through CuPy, the nvcc-built ``pyhessk._core_cuda``, or the tests' host emulation. Nothing
here synchronizes the device except where a Python value must be returned (the loss).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ... import _spec
from .._base import FLOPS_PER_BYTE, BackendBase, ModelSpec
from ..numpy.dense import dense_curvature
from . import _kernels


def _act_ids(model: ModelSpec) -> list[int]:
    return [_spec.ACTIVATION_BY_NAME[a].id for a in model.activations]


def _d2_zero(model: ModelSpec) -> list[bool]:
    return [_spec.ACTIVATION_BY_NAME[a].d2_zero for a in model.activations]


@dataclass
class CudaLin:
    """A linearization on the device: the forward (+ backward) caches and the product workspace."""

    engine: Any  # the CudaBackend that made it (Curvature asks products of this engine)
    model: ModelSpec
    n: int
    dtype: np.dtype
    host: bool  # θ was a host (NumPy) array: results go back to NumPy
    loss: float
    theta: Any
    A: list[Any]  # A_0 = X, …, A_{L−1}: flat (n, n_l)
    dphi: list[Any]  # l = 1..L−1 at index l − 1
    d2phi: list[Any | None]
    F: Any
    aux: Any
    E: Any
    grad_dev: Any = None
    delta: list[Any] = field(default_factory=list)  # Δ_1..Δ_L
    gamma: list[Any] = field(default_factory=list)  # Γ_1..Γ_{L−1}
    ws: dict[str, Any] = field(default_factory=dict)
    ws_k: int = 0
    partials: Any = None  # float64 partial column sums of the bias sums, grown to the largest used
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def grad(self) -> Any:
        if self.grad_dev is None:
            return None
        return self.engine.provider.to_host(self.grad_dev) if self.host else self.grad_dev


@dataclass
class CudaFactors:
    """The entrywise Gauss–Newton precomputation on the device (csrc/cuda/kernels/gnh.cuh layouts)."""

    lin: CudaLin
    S: Any  # all S_l, flat; S_off[l − 1] is where S_l (n_l, n, d) starts
    AT: Any  # all A_{l−1}ᵀ (n_{l−1}, n), flat
    nu: Any  # all ν_l (n_l, n), flat
    S_off: list[int]
    AT_off: list[int]
    nu_off: list[int]


@dataclass
class CudaRForward:
    output: Any  # R{f} = J V: (n, k, d)


class CudaEngine(BackendBase):
    """Every primitive of the engine protocol on the GPU; hvp/gnvp/jvp/vjp run fused from cached passes."""

    name = "cuda"
    description = ""  # which path and device, for show_config
    #: not yet measured on a GPU: the route model prices the factors as for the AVX2 CPU until a run fits it
    factor_byte_flops = FLOPS_PER_BYTE

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.xp = provider.xp

    # ---- helpers ---------------------------------------------------------------------------------------
    def _dev(self, a: Any, dtype: Any) -> Any:
        return self.provider.to_device(a, dtype)

    def _out(self, a: Any, like_host: bool) -> Any:
        return self.provider.to_host(a) if like_host else a

    def _run(self, name: str, dtype: np.dtype, total: int, *args: Any, tag: int | None = None) -> None:
        self.provider.launch(name, dtype, tag, total, *args)

    def _gemm(self, ta: bool, tb: bool, M: int, N: int, K: int, alpha: float, A: Any, lda: int, B: Any, ldb: int,
              beta: float, C: Any, ldc: int, batch: int = 1, strides: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.provider.gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, strides)

    @staticmethod
    def _W(lin: CudaLin, l: int) -> Any:
        w0, b0, _ = lin.model.offsets[l - 1]
        return lin.theta[w0:b0]

    @staticmethod
    def _b(lin: CudaLin, l: int) -> Any:
        _, b0, end = lin.model.offsets[l - 1]
        return lin.theta[b0:end] if lin.model.bias else None

    # ---- forward and linearization --------------------------------------------------------------------
    def forward(self, model: ModelSpec, theta: Any, X: Any) -> Any:
        host = self.provider.is_host(theta)
        dt = np.dtype(theta.dtype)
        th, a = self._dev(theta, dt), self._dev(X, dt).ravel()
        n, sizes, acts = X.shape[0], model.sizes, _act_ids(model)
        xp = self.xp
        for l in range(1, model.num_layers + 1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            w0, b0, end = model.offsets[l - 1]
            z = xp.empty(n * n_l, dtype=dt)
            self._gemm(False, True, n, n_l, n_prev, 1.0, a, n_prev, th[w0:b0], n_prev, 0.0, z, n_l)
            b = th[b0:end] if model.bias else None
            if l < model.num_layers:
                self._run("activation_value_kernel", dt, z.size, n_l, b, z, tag=acts[l - 1])
            elif b is not None:
                self._run("add_bias_kernel", dt, z.size, n_l, b, z)
            a = z
        return self._out(a.reshape(n, sizes[-1]), host)

    def linearize(self, model: ModelSpec, theta: Any, X: Any, T: Any, backward: bool = True) -> CudaLin:
        xp = self.xp
        host = self.provider.is_host(theta)
        dt = np.dtype(theta.dtype)
        n, d, L, sizes = X.shape[0], model.sizes[-1], model.num_layers, model.sizes
        th = self.provider.copy_to_device(theta, dt)  # the snapshot owns θ and X
        A = [self.provider.copy_to_device(X, dt).ravel()]
        dphi, d2phi = [], []
        acts, zero2 = _act_ids(model), _d2_zero(model)
        lin_theta = th
        for l in range(1, L):
            n_l, n_prev = sizes[l], sizes[l - 1]
            w0, b0, end = model.offsets[l - 1]
            z = xp.empty(n * n_l, dtype=dt)
            self._gemm(False, True, n, n_l, n_prev, 1.0, A[-1], n_prev, th[w0:b0], n_prev, 0.0, z, n_l)
            d1 = xp.empty_like(z)
            d2 = None if zero2[l - 1] else xp.empty_like(z)
            self._run("activation_kernel", dt, z.size, n_l, th[b0:end] if model.bias else None, z, d1, d2,
                      tag=acts[l - 1])
            A.append(z)
            dphi.append(d1)
            d2phi.append(d2)
        w0, b0, end = model.offsets[L - 1]
        F = xp.empty(n * d, dtype=dt)
        self._gemm(False, True, n, d, sizes[L - 1], 1.0, A[-1], sizes[L - 1], th[w0:b0], sizes[L - 1], 0.0, F, d)
        if model.bias:
            self._run("add_bias_kernel", dt, F.size, d, th[b0:end], F)
        Tdev = self._dev(T, dt).ravel()
        E, aux = xp.empty_like(F), xp.empty_like(F)
        losses = xp.empty(n, dtype=np.float64)
        sc = model.scale(n)
        self._run("loss_head_kernel", dt, n, d, F, Tdev, E, aux, sc, losses, tag=_spec.LOSS_BY_NAME[model.loss].id)
        total = losses.sum() * sc
        if model.l2:
            for w0, b0, _ in model.offsets:
                w = th[w0:b0].astype(np.float64)
                total = total + 0.5 * model.l2 * xp.dot(w, w)
        loss = float(total)  # the one synchronisation: the loss is a Python float
        lin = CudaLin(self, model, n, dt, host, loss, lin_theta, A, dphi, d2phi, F, aux, E)
        if backward:
            self.backward(lin)
        return lin

    def backward(self, lin: CudaLin) -> None:
        with lin.lock:
            self._backward_locked(lin)

    def _deltas_locked(self, lin: CudaLin) -> None:
        """Δ_l = ∂(s Σ ℓ)/∂Z_l and Γ_l = Δ_{l+1} W_{l+1}: all a Hessian product needs of the backward pass
        (1 layer-GEMM per layer)."""
        if lin.delta:
            return
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        L, sizes = m.num_layers, m.sizes
        delta: list[Any] = [None] * L
        gamma: list[Any] = [None] * (L - 1)
        delta[L - 1] = lin.E
        for l in range(L, 1, -1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            G = xp.empty(n * n_prev, dtype=dt)
            self._gemm(False, False, n, n_prev, n_l, 1.0, delta[l - 1], n_l, self._W(lin, l), n_prev, 0.0, G, n_prev)
            Dn = xp.empty_like(G)
            self._run("hadamard_kernel", dt, G.size, lin.dphi[l - 2], G, Dn)
            gamma[l - 2], delta[l - 2] = G, Dn
        lin.delta, lin.gamma = delta, gamma

    def _backward_locked(self, lin: CudaLin) -> None:
        """The gradient: the deltas, then Δ_lᵀ A_{l−1} (+ λ W_l) and the bias sums per layer."""
        if lin.grad_dev is not None:
            return
        self._deltas_locked(lin)
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        grad = xp.empty(m.num_params, dtype=dt)
        for l in range(m.num_layers, 0, -1):
            n_l, n_prev = m.sizes[l], m.sizes[l - 1]
            w0, b0, _ = m.offsets[l - 1]
            D = lin.delta[l - 1]
            gW = grad[w0:b0]
            self._gemm(True, False, n_l, n_prev, n, 1.0, D, n_l, lin.A[l - 1], n_prev, 0.0, gW, n_prev)
            if m.l2:
                self._run("axpy_kernel", dt, gW.size, m.l2, self._W(lin, l), gW)
            if m.bias:
                self._bias_sums(lin, D, 1, n_l, b0, grad)
        lin.grad_dev = grad

    def empirical_fisher_diagonal(self, lin: CudaLin) -> Any:
        """Per layer (Δ_l ⊙ Δ_l / s)ᵀ (A_{l−1} ⊙ A_{l−1}): two elementwise kernels and one GEMM; the biases take
        the float64 column sums of Δ_l ⊙ Δ_l / s."""
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        out = xp.empty(m.num_params, dtype=dt)
        with lin.lock:
            self._deltas_locked(lin)
            for l in range(1, m.num_layers + 1):
                n_l, n_prev = m.sizes[l], m.sizes[l - 1]
                w0, b0, _ = m.offsets[l - 1]
                D = lin.delta[l - 1]
                D2 = xp.zeros(n * n_l, dtype=dt)
                self._run("axpy_kernel", dt, D2.size, 1.0 / m.scale(n), D, D2)  # Δ/s = ∂ℓ_k/∂z
                self._run("hadamard_kernel", dt, D2.size, D, D2, D2)  # s·(∂ℓ_k/∂z)²
                A2 = xp.empty(n * n_prev, dtype=dt)
                self._run("square_kernel", dt, A2.size, lin.A[l - 1], A2)
                self._gemm(True, False, n_l, n_prev, n, 1.0, D2, n_l, A2, n_prev, 0.0, out[w0:b0], n_prev)
                if m.l2:
                    self._run("add_scalar_kernel", dt, b0 - w0, m.l2, out[w0:b0])
                if m.bias:
                    self._bias_sums(lin, D2, 1, n_l, b0, out)
        return self._out(out, lin.host)

    # ---- dense matrices --------------------------------------------------------------------------------
    def dense_curvature(self, lin: CudaLin, kind: str) -> Any:
        """Dense H (``kind="hessian"``) or G assembled from per-sample terms on the device: the reference
        assembly (backends/numpy/dense.py) over the engine's array namespace, fed with the linearization's
        caches; s·H_out per sample comes from the loss head's kernel applied to the d unit vectors."""
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        L, sizes, d = m.num_layers, m.sizes, m.sizes[-1]
        hessian = kind == "hessian"
        with lin.lock:
            if hessian:
                self._deltas_locked(lin)
            eye = xp.ascontiguousarray(xp.broadcast_to(xp.eye(d, dtype=dt), (n, d, d)))
            hout = xp.empty_like(eye)  # H_out is symmetric: row j of s·H_out per sample is H_out e_j
            self._output_hessian(lin, eye.ravel(), d, hout.ravel())
        Ws = [self._W(lin, l).reshape(sizes[l], sizes[l - 1]) for l in range(1, L + 1)]
        A = [a.reshape(n, sizes[l]) for l, a in enumerate(lin.A)]
        dphi = [g.reshape(n, sizes[l]) for l, g in enumerate(lin.dphi, start=1)]
        d2gamma: list[Any] = [None] * (L - 1)  # Γ_l ⊙ φ″_l: H only
        delta = None
        if hessian:
            d2gamma = [None if d2 is None else (d2 * g).reshape(n, sizes[l])
                       for l, (d2, g) in enumerate(zip(lin.d2phi, lin.gamma), start=1)]
            delta = [D.reshape(n, sizes[l]) for l, D in enumerate(lin.delta, start=1)]
        H = dense_curvature(m, Ws, A, dphi, d2gamma, delta, lambda k0, k1: hout[k0:k1], n, xp=xp)
        return self._out(H, lin.host)

    # ---- workspace -------------------------------------------------------------------------------------
    def _reserve(self, lin: CudaLin, k: int) -> dict[str, Any]:
        """The product workspace, owned by the linearization and sized for the largest k seen."""
        if k <= lin.ws_k:
            return lin.ws
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        sizes, L = m.sizes, m.num_layers
        max_w = max(sizes)
        max_nl = max(sizes[l] * sizes[l - 1] for l in range(1, L + 1))
        blk = k * max(max_nl, max_w)
        lin.ws = {
            "RZ": [xp.empty(n * k * sizes[l], dtype=dt) for l in range(1, L + 1)],
            "RA": [xp.empty(n * k * sizes[l], dtype=dt) for l in range(1, L)],
            "buf_a": xp.empty(n * k * max_w, dtype=dt),
            "buf_b": xp.empty(n * k * max_w, dtype=dt),
            "pack": xp.empty(blk, dtype=dt),
            "hw": xp.empty(blk, dtype=dt),
            "t2": xp.empty(blk, dtype=dt),
        }
        lin.ws_k = k
        return lin.ws

    # ---- products ----------------------------------------------------------------------------------------
    def _r_forward(self, lin: CudaLin, V: Any, k: int, ws: dict[str, Any]) -> None:
        m, n, dt = lin.model, lin.n, lin.dtype
        sizes, L = m.sizes, m.num_layers
        for l in range(1, L + 1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            w0, b0, _ = m.offsets[l - 1]
            nl = n_l * n_prev
            RZ = ws["RZ"][l - 1][: n * k * n_l]
            P = ws["pack"][: k * nl]  # packed also for k = 1 (one copy), so work per call does not depend on k
            self._run("pack_rows_kernel", dt, k * nl, V, w0, k, nl, P)
            # A_{l−1} [V_l^(1); …; V_l^(k)]ᵀ: (n × n_{l−1}) · (n_{l−1} × k·n_l)
            self._gemm(False, True, n, k * n_l, n_prev, 1.0, lin.A[l - 1], n_prev, P, n_prev, 0.0, RZ, k * n_l)
            if l > 1:  # + R{A_{l−1}} W_lᵀ over n·k rows
                self._gemm(False, True, n * k, n_l, n_prev, 1.0, ws["RA"][l - 2][: n * k * n_prev], n_prev,
                           self._W(lin, l), n_prev, 1.0, RZ, n_l)
            hidden = l < L
            self._run("rforward_kernel", dt, RZ.size, k, n_l, V if m.bias else None, b0,
                      lin.dphi[l - 1] if hidden else None, RZ, ws["RA"][l - 1][: n * k * n_l] if hidden else None)

    def _output_hessian(self, lin: CudaLin, R: Any, k: int, out: Any) -> None:
        d = lin.model.sizes[-1]
        self._run("output_hessian_kernel", lin.dtype, lin.n * k, k, d, lin.aux, R, lin.model.scale(lin.n), out,
                  tag=_spec.LOSS_BY_NAME[lin.model.loss].id)

    def _assemble(self, lin: CudaLin, l: int, k: int, D: Any, RA: Any, V: Any, out: Any, ws: dict[str, Any]) -> None:
        m, n, dt = lin.model, lin.n, lin.dtype
        n_l, n_prev = m.sizes[l], m.sizes[l - 1]
        w0, b0, _ = m.offsets[l - 1]
        nl = n_l * n_prev
        hw = ws["hw"][: k * nl]
        self._gemm(True, False, k * n_l, n_prev, n, 1.0, D, k * n_l, lin.A[l - 1], n_prev, 0.0, hw, n_prev)
        t2 = None
        if RA is not None:
            t2 = ws["t2"][: k * nl]
            self._gemm(True, False, n_l, k * n_prev, n, 1.0, lin.delta[l - 1], n_l, RA, k * n_prev, 0.0, t2,
                       k * n_prev)
        reg = V is not None and m.l2 != 0
        self._run("assemble_kernel", dt, nl * k, k, nl, n_prev, hw, t2, V if reg else None, m.l2, w0, out)
        if m.bias:
            self._bias_sums(lin, D, k, n_l, b0, out)

    def _bias_sums(self, lin: CudaLin, D: Any, k: int, n_l: int, b0: int, out: Any) -> None:
        """out[b0·k + r·k + j] = Σ_s D[s, j, r] for D (n, k, n_l) and out (N, k), flat, summed in float64
        whatever the dtype: per tile of columns and chunk of rows a double partial, then per tile the sum of
        its chunks (two kernels, in a fixed order)."""
        m = k * n_l
        tiles, chunks = -(-m // _kernels.SUM_COLS), -(-lin.n // _kernels.SUM_ROWS)
        if lin.partials is None or lin.partials.size < chunks * m:
            lin.partials = self.xp.empty(chunks * m, dtype=np.float64)
        partial = lin.partials[: chunks * m]
        self._run("column_partials_kernel", lin.dtype, tiles * chunks, lin.n, m, D, partial)
        self._run("column_finish_kernel", lin.dtype, tiles, chunks, k, n_l, partial, out[b0 * k:])

    def _row_sums(self, lin: CudaLin, X: Any, rows: int, sc: float, out: Any) -> None:
        """out[r] = sc Σ_s X[r, s] for X (rows, n), flat, summed in float64: one block per row (the per-unit
        bias sums of the GNH columns and diagonal)."""
        self._run("row_sums_kernel", lin.dtype, rows, lin.n, X, sc, out)

    def _gn_backward(self, lin: CudaLin, U: Any, k: int, V: Any, out: Any, ws: dict[str, Any],
                     u_in_buf_a: bool) -> None:
        """Jᵀ U (+ λ P_W V) into out; ``u_in_buf_a`` says U lives in the workspace's first buffer."""
        m, n, dt = lin.model, lin.n, lin.dtype
        sizes, L = m.sizes, m.num_layers
        D = U
        bufs = [ws["buf_a"], ws["buf_b"]]
        which = 1 if u_in_buf_a else 0
        for l in range(L, 0, -1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            self._assemble(lin, l, k, D, None, V, out, ws)
            if l == 1:
                break
            nxt = bufs[which][: n * k * n_prev]
            self._gemm(False, False, n * k, n_prev, n_l, 1.0, D, n_l, self._W(lin, l), n_prev, 0.0, nxt, n_prev)
            self._run("scale_rows_kernel", dt, nxt.size, k, n_prev, lin.dphi[l - 2], nxt)
            D = nxt
            which ^= 1

    def _block_in(self, lin: CudaLin, V: Any) -> tuple[Any, bool]:
        return self._dev(V, lin.dtype), self.provider.is_host(V)

    def hvp(self, lin: CudaLin, V: Any) -> Any:
        Vd, host = self._block_in(lin, V)
        k = Vd.shape[1]
        out = self.xp.empty_like(Vd)
        with lin.lock:
            self._deltas_locked(lin)  # the weight gradient is not needed (hk.hvp linearizes forward-only)
            ws = self._reserve(lin, k)
            self._hvp_locked(lin, Vd.ravel(), k, out.ravel(), ws)
        return self._out(out, host)

    def _hvp_locked(self, lin: CudaLin, V: Any, k: int, out: Any, ws: dict[str, Any]) -> None:
        m, n, dt = lin.model, lin.n, lin.dtype
        sizes, L, d = m.sizes, m.num_layers, m.sizes[-1]
        self._r_forward(lin, V, k, ws)
        RD = ws["buf_a"][: n * k * d]
        self._output_hessian(lin, ws["RZ"][L - 1][: n * k * d], k, RD)
        other = ws["buf_b"]
        for l in range(L, 0, -1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            w0 = m.offsets[l - 1][0]
            self._assemble(lin, l, k, RD, ws["RA"][l - 2][: n * k * n_prev] if l > 1 else None, V, out, ws)
            if l == 1:
                break
            # R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l: two GEMMs; then R{Δ_{l−1}} in one fused kernel
            RG = other[: n * k * n_prev]
            P = ws["pack"][: k * n_l * n_prev]
            self._run("pack_cols_kernel", dt, P.size, V, w0, k, n_prev, P)
            self._gemm(False, False, n, k * n_prev, n_l, 1.0, lin.delta[l - 1], n_l, P, k * n_prev, 0.0, RG,
                       k * n_prev)
            self._gemm(False, False, n * k, n_prev, n_l, 1.0, RD, n_l, self._W(lin, l), n_prev, 1.0, RG, n_prev)
            self._run("rbackward_kernel", dt, RG.size, k, n_prev, lin.dphi[l - 2], lin.d2phi[l - 2],
                      lin.gamma[l - 2], ws["RZ"][l - 2][: n * k * n_prev], RG)
            other = ws["buf_a"] if other is ws["buf_b"] else ws["buf_b"]
            RD = RG

    def gnvp(self, lin: CudaLin, V: Any) -> Any:
        Vd, host = self._block_in(lin, V)
        k, n, d = Vd.shape[1], lin.n, lin.model.sizes[-1]
        out = self.xp.empty_like(Vd)
        with lin.lock:
            ws = self._reserve(lin, k)
            self._r_forward(lin, Vd.ravel(), k, ws)
            U = ws["buf_a"][: n * k * d]
            self._output_hessian(lin, ws["RZ"][-1][: n * k * d], k, U)
            self._gn_backward(lin, U, k, Vd.ravel(), out.ravel(), ws, True)
        return self._out(out, host)

    def jvp(self, lin: CudaLin, V: Any) -> Any:
        Vd, host = self._block_in(lin, V)
        k, n, d = Vd.shape[1], lin.n, lin.model.sizes[-1]
        with lin.lock:
            ws = self._reserve(lin, k)
            self._r_forward(lin, Vd.ravel(), k, ws)
            out = ws["RZ"][-1][: n * k * d].copy().reshape(n, k, d)
        return self._out(out, host)

    def vjp(self, lin: CudaLin, U: Any) -> Any:
        Ud, host = self._block_in(lin, U)
        k = Ud.shape[1]
        out = self.xp.empty((lin.model.num_params, k), dtype=lin.dtype)
        with lin.lock:
            ws = self._reserve(lin, k)
            self._gn_backward(lin, Ud.ravel(), k, None, out.ravel(), ws, False)
        return self._out(out, host)

    # The separate R-passes of the protocol; the products above fuse them.
    def r_forward(self, lin: CudaLin, V: Any) -> CudaRForward:
        return CudaRForward(self.jvp(lin, V))

    def r_backward(self, lin: CudaLin, rf: CudaRForward, V: Any) -> Any:
        return self.hvp(lin, V)

    def output_hessian(self, lin: CudaLin, R: Any) -> Any:
        Rd, host = self._block_in(lin, R)
        out = self.xp.empty_like(Rd)
        self._output_hessian(lin, Rd.ravel(), Rd.shape[1], out.ravel())
        return self._out(out, host)

    def gn_backward(self, lin: CudaLin, U: Any, V: Any | None = None) -> Any:
        out = self.vjp(lin, U)
        if V is not None and lin.model.l2:
            xp = self.provider.namespace_of(out)
            mask = xp.asarray(lin.model.weight_mask(out.dtype))
            out += lin.model.l2 * mask[:, None] * self.provider.like(V, out)
        return out

    # ---- entrywise Gauss–Newton ----------------------------------------------------------------------
    def gnh_precompute(self, lin: CudaLin) -> CudaFactors:
        xp, m, n, dt = self.xp, lin.model, lin.n, lin.dtype
        sizes, L, d = m.sizes, m.num_layers, m.sizes[-1]
        S_off, AT_off, nu_off = [], [], []
        s_pos = a_pos = 0
        for l in range(1, L + 1):
            S_off.append(s_pos)
            nu_off.append(s_pos // d)
            AT_off.append(a_pos)
            s_pos += sizes[l] * n * d
            a_pos += sizes[l - 1] * n
        S = xp.empty(s_pos, dtype=dt)
        AT = xp.empty(a_pos, dtype=dt)
        nu = xp.empty(s_pos // d, dtype=dt)
        fac = CudaFactors(lin, S, AT, nu, S_off, AT_off, nu_off)

        def S_l(l: int) -> Any:
            return self._S(fac, l)

        self._run("output_factor_kernel", dt, d * n * d, n, d, lin.aux, S_l(L), tag=_spec.LOSS_BY_NAME[m.loss].id)
        for l in range(L - 1, 0, -1):
            # S_l = D_l W_{l+1}ᵀ S_{l+1}: one GEMM (n_l × n_{l+1}) · (n_{l+1} × n·d), then the φ′ scaling
            n_l, n_next = sizes[l], sizes[l + 1]
            self._gemm(True, False, n_l, n * d, n_next, 1.0, self._W(lin, l + 1), n_l, S_l(l + 1), n * d, 0.0,
                       S_l(l), n * d)
            self._run("scale_sensitivity_kernel", dt, n_l * n * d, n, d, n_l, lin.dphi[l - 1], S_l(l))
        for l in range(1, L + 1):
            n_l, n_prev = sizes[l], sizes[l - 1]
            self._run("column_norm_kernel", dt, n_l * n, d, S_l(l), nu[nu_off[l - 1]: nu_off[l - 1] + n_l * n])
            self._run("transpose_kernel", dt, n * n_prev, n, n_prev, lin.A[l - 1],
                      AT[AT_off[l - 1]: AT_off[l - 1] + n_prev * n])
        return fac

    def gnh_gnvp(self, fac: CudaFactors, V: Any, carry: Sequence[bool] | None = None) -> Any:
        """G V = s·Ŝᵀ(Ŝ V) + λ P_W V from the stored factors (ALGORITHMS §4.4): per layer the GEMM
        A_{l−1}V_lᵀ, a batched GEMM over samples contracting it with S_l into u (n, k, d), then per layer
        the batched GEMM Q_l = u S_lᵀ and the weight-block GEMM of the plain backward pass (its assembly
        epilogue adds the bias sums and λ P_W V). No R-forward, no backward chain through the weights, except
        for the hidden layers flagged in ``carry``: their R-values take the R-forward step through W_{l+1}
        (and Q_l = φ′_l ⊙ Q_{l+1} W_{l+1} on the way back) instead of meeting S_l."""
        lin = fac.lin
        Vd, host = self._block_in(lin, V)
        m, n, dt = lin.model, lin.n, lin.dtype
        sizes, L, d = m.sizes, m.num_layers, m.sizes[-1]
        k = Vd.shape[1]
        out = self.xp.empty_like(Vd)
        v = Vd.ravel()

        def carried(l: int) -> bool:
            return bool(carry) and l < L and bool(carry[l - 1])

        with lin.lock:
            ws = self._reserve(lin, k)
            u = ws["buf_a"][: n * k * d]
            first = True  # the first contraction into u overwrites it
            for l in range(1, L + 1):
                n_l, n_prev = sizes[l], sizes[l - 1]
                w0, b0, _ = m.offsets[l - 1]
                nl = n_l * n_prev
                P = ws["pack"][: k * nl]
                self._run("pack_rows_kernel", dt, k * nl, v, w0, k, nl, P)
                Z = ws["RZ"][l - 1][: n * k * n_l]  # (n, k, n_l) = A_{l−1} V_lᵀ + v_l (+ the carried layer below)
                self._gemm(False, True, n, k * n_l, n_prev, 1.0, lin.A[l - 1], n_prev, P, n_prev, 0.0, Z, k * n_l)
                if carried(l - 1):  # + (φ′_{l−1} ⊙ Z_{l−1}) W_lᵀ over n·k rows
                    self._gemm(False, True, n * k, n_l, n_prev, 1.0, ws["RA"][l - 2][: n * k * n_prev], n_prev,
                               self._W(lin, l), n_prev, 1.0, Z, n_l)
                if carried(l):  # Z += v_l, and RA_l = φ′_l ⊙ Z for the layer above
                    self._run("rforward_kernel", dt, Z.size, k, n_l, v if m.bias else None, b0, lin.dphi[l - 1], Z,
                              ws["RA"][l - 1][: n * k * n_l])
                    continue
                if m.bias:
                    self._run("rforward_kernel", dt, Z.size, k, n_l, v, b0, None, Z, None)
                # u_s (k × d) += s · Z_s (k × n_l) · S_l[:, s, :] (n_l × d), for every sample s
                self._gemm(False, False, k, d, n_l, m.scale(n), Z, n_l, self._S(fac, l), n * d,
                           0.0 if first else 1.0, u, d, batch=n, strides=(k * n_l, d, k * d))
                first = False
            for l in range(L, 0, -1):
                n_l = sizes[l]
                Q = ws["RZ"][l - 1][: n * k * n_l]  # Q_l (n, k, n_l); Q_{l+1} is kept in RZ[l] for a carried layer
                if carried(l):  # Q_l = φ′_l ⊙ Q_{l+1} W_{l+1}
                    n_next = sizes[l + 1]
                    self._gemm(False, False, n * k, n_l, n_next, 1.0, ws["RZ"][l][: n * k * n_next], n_next,
                               self._W(lin, l + 1), n_l, 0.0, Q, n_l)
                    self._run("scale_rows_kernel", dt, Q.size, k, n_l, lin.dphi[l - 1], Q)
                else:  # Q_s (k × n_l) = u_s (k × d) · S_l[:, s, :]ᵀ
                    self._gemm(False, True, k, n_l, d, 1.0, u, d, self._S(fac, l), n * d, 0.0, Q, n_l,
                               batch=n, strides=(k * d, d, k * n_l))
                self._assemble(lin, l, k, Q, None, v, out.ravel(), ws)
        return self._out(out, host)

    @staticmethod
    def _S(fac: CudaFactors, l: int) -> Any:
        """S_l (n_l, n, d), flat."""
        lin = fac.lin
        return fac.S[fac.S_off[l - 1]: fac.S_off[l - 1] + lin.model.sizes[l] * lin.n * lin.model.sizes[-1]]

    def gnh_layer_factors(self, fac: CudaFactors, l: int) -> tuple[Any, Any]:
        """Views of S_l as (n_l, n, d) and A_{l−1} as (n, n_{l−1}) (device arrays)."""
        m, n, d = fac.lin.model, fac.lin.n, fac.lin.model.sizes[-1]
        return self._S(fac, l).reshape(m.sizes[l], n, d), fac.lin.A[l - 1].reshape(n, m.sizes[l - 1])

    def _addresses(self, fac: CudaFactors, idx: np.ndarray) -> tuple[Any, Any, Any, np.ndarray]:
        """Device int64 offsets (into S, AT, nu) of each parameter's factors, and the host weight flags."""
        m, n, d = fac.lin.model, fac.lin.n, fac.lin.model.sizes[-1]
        layer, row, col = m.decode(np.asarray(idx, dtype=np.int64))
        S_off = np.asarray(fac.S_off, dtype=np.int64)[layer - 1]
        AT_off = np.asarray(fac.AT_off, dtype=np.int64)[layer - 1]
        nu_off = np.asarray(fac.nu_off, dtype=np.int64)[layer - 1]
        sb = S_off + row * n * d
        ab = np.where(col < 0, -1, AT_off + col * n)
        nb = nu_off + row * n
        dev = self.provider.to_device
        return dev(sb, np.int64), dev(ab, np.int64), dev(nb, np.int64), col >= 0

    def _lam(self, fac: CudaFactors, rows: np.ndarray, cols: np.ndarray, is_w: np.ndarray) -> Any:
        l2 = fac.lin.model.l2
        lam = np.where((rows == cols) & is_w, l2, 0.0).astype(fac.lin.dtype)
        return self.provider.to_device(lam, fac.lin.dtype)

    def gnh_entries(self, fac: CudaFactors, rows: np.ndarray, cols: np.ndarray) -> Any:
        lin = fac.lin
        sp, ap, _, is_w = self._addresses(fac, rows)
        sq, aq, _, _ = self._addresses(fac, cols)
        out = self.xp.empty(rows.size, dtype=lin.dtype)
        self._run("entries_kernel", lin.dtype, rows.size, lin.n, lin.model.sizes[-1], fac.S, fac.AT, sp, ap, sq, aq,
                  self._lam(fac, rows, cols, is_w), lin.model.scale(lin.n), out)
        return self._out(out, lin.host)

    def _gather(self, fac: CudaFactors, idx: np.ndarray) -> Any:
        lin = fac.lin
        n, d = lin.n, lin.model.sizes[-1]
        sb, ab, _, _ = self._addresses(fac, idx)
        out = self.xp.empty(idx.size * n * d, dtype=lin.dtype)
        self._run("gather_kernel", lin.dtype, out.size, n * d, d, fac.S, fac.AT, sb, ab, out)
        return out

    def gnh_block(self, fac: CudaFactors, I: np.ndarray, J: np.ndarray) -> Any:
        lin = fac.lin
        nd = lin.n * lin.model.sizes[-1]
        XI, YJ = self._gather(fac, I), self._gather(fac, J)
        out = self.xp.empty(I.size * J.size, dtype=lin.dtype)
        self._gemm(False, True, I.size, J.size, nd, lin.model.scale(lin.n), XI, nd, YJ, nd, 0.0, out, J.size)
        out = out.reshape(I.size, J.size)
        if lin.model.l2:
            is_w = lin.model.decode(I)[2] >= 0
            lam = np.where((I[:, None] == J[None, :]) & is_w[:, None], lin.model.l2, 0.0).astype(lin.dtype)
            out += self.provider.to_device(lam, lin.dtype)
        return self._out(out, lin.host)

    def gnh_columns(self, fac: CudaFactors, J: np.ndarray) -> Any:
        lin, xp, dt = fac.lin, self.xp, fac.lin.dtype
        m, n, d, sz = J.size, lin.n, lin.model.sizes[-1], lin.model.sizes
        sc = lin.model.scale(n)
        U = self._gather(fac, J)  # (m, n, d)
        out = xp.empty(lin.model.num_params * m, dtype=dt)
        for l in range(1, lin.model.num_layers + 1):
            n_l, n_prev = sz[l], sz[l - 1]
            w0, b0, _ = lin.model.offsets[l - 1]
            S_l = fac.S[fac.S_off[l - 1]: fac.S_off[l - 1] + n_l * n * d]
            Tl = xp.empty(n_l * m * n, dtype=dt)
            self._run("contract_kernel", dt, Tl.size, n, d, m, S_l, U, Tl)
            R = xp.empty(n_l * m * n_prev, dtype=dt)  # s T_l A_{l−1}: (n_l·m × n) · (n × n_{l−1})
            self._gemm(False, False, n_l * m, n_prev, n, sc, Tl, n, lin.A[l - 1], n_prev, 0.0, R, n_prev)
            self._run("scatter_columns_kernel", dt, R.size, m, n_prev, R, w0, out)
            if lin.model.bias:
                self._row_sums(lin, Tl, n_l * m, sc, out[b0 * m:])
        out = out.reshape(lin.model.num_params, m)
        if lin.model.l2:
            is_w = lin.model.decode(J)[2] >= 0
            if is_w.any():
                cols = np.flatnonzero(is_w)
                out[self.provider.to_device(J[cols], np.int64), self.provider.to_device(cols, np.int64)] += lin.model.l2
        return self._out(out, lin.host)

    def gnh_diagonal(self, fac: CudaFactors) -> Any:
        lin, xp, dt = fac.lin, self.xp, fac.lin.dtype
        n, sz = lin.n, lin.model.sizes
        sc = lin.model.scale(n)
        out = xp.empty(lin.model.num_params, dtype=dt)
        for l in range(1, lin.model.num_layers + 1):
            n_l, n_prev = sz[l], sz[l - 1]
            w0, b0, _ = lin.model.offsets[l - 1]
            nu2 = xp.empty(n_l * n, dtype=dt)
            self._run("square_kernel", dt, nu2.size, fac.nu[fac.nu_off[l - 1]: fac.nu_off[l - 1] + n_l * n], nu2)
            A2 = xp.empty(n * n_prev, dtype=dt)
            self._run("square_kernel", dt, A2.size, lin.A[l - 1], A2)
            # G_pp = s Σ_k ν²_{l,k,i} a²_{l−1,k}[j]: (n_l × n) · (n × n_{l−1})
            self._gemm(False, False, n_l, n_prev, n, sc, nu2, n, A2, n_prev, 0.0, out[w0:b0], n_prev)
            if lin.model.l2:
                self._run("add_scalar_kernel", dt, b0 - w0, lin.model.l2, out[w0:b0])
            if lin.model.bias:
                self._row_sums(lin, nu2, n_l, sc, out[b0:])
        return self._out(out, lin.host)

    def gnh_sample(self, fac: CudaFactors, rows: np.ndarray, cols: np.ndarray, s: int, seed: int | None) -> Any:
        lin, xp, dt = fac.lin, self.xp, fac.lin.dtype
        n, d = lin.n, lin.model.sizes[-1]
        seed64 = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        out = xp.empty(rows.size, dtype=dt)
        chunk = max(1, min(rows.size, (1 << 24) // max(n, 1)))  # cdf workspace: at most 128 MiB
        cdf = xp.empty(chunk * n, dtype=np.float64)
        for t0 in range(0, rows.size, chunk):
            r, c = rows[t0:t0 + chunk], cols[t0:t0 + chunk]
            sp, ap, np_, is_w = self._addresses(fac, r)
            sq, aq, nq, _ = self._addresses(fac, c)
            self._run("sample_kernel", dt, r.size, n, d, s, seed64, t0, fac.S, fac.AT, fac.nu, sp, ap, np_, sq, aq,
                      nq, self._lam(fac, r, c, is_w), lin.model.scale(n), cdf, out[t0:t0 + r.size])
        return self._out(out, lin.host)
