"""The Numba engine: every primitive of ``backends._base.Backend`` as compiled passes over flat buffers.

The Python layer below only allocates a linearization's buffers and calls one compiled function per
operation (see ``_passes`` for the layout and ``_gnh`` for the entrywise Gauss–Newton Hessian). Each
product the API calls (``hvp``, ``gnvp``, ``jvp``, ``vjp``) is a single compiled call that packs the block
of directions, runs the R-passes and unpacks the result, so Python overhead does not grow with the depth
or with the number of directions k. Its scratch buffers come from the linearization's ``Workspace``
(sized for the largest k seen, reused under a lock), so a cached product allocates only its result; the
factored G V (``gnh_gnvp``) does the same on the GNH factors. Compilation happens on first use (or is
loaded from Numba's cache), never at import, once per dtype: activations and losses are selected by
registry id inside the kernels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ... import _spec
from .._base import BackendBase, ModelSpec
from . import _dense, _gnh, _passes
from .activations import ACTIVATIONS, FIRST, SECOND
from .losses import LOSSES

Array = np.ndarray


@dataclass(frozen=True)
class Geometry:
    """A model as the kernels see it: int64 arrays of sizes, offsets and ids (made once per ModelSpec)."""

    sizes: Array  # (L + 1,) layer widths
    woff: Array  # (L,) start of W_l in θ
    boff: Array  # (L,) start of b_l in θ, −1 without biases
    acts: Array  # (L − 1,) activation registry ids of the hidden layers
    modes: Array  # (L − 1,) FIRST (φ″ ≡ 0) or SECOND: what the linearization keeps per hidden layer
    loss: int  # loss registry id
    cum: Array  # (L + 2,) cum[l] = n_0 + … + n_{l−1}

    @property
    def keeps_d2(self) -> bool:
        return bool((self.modes == SECOND).any())


@lru_cache(maxsize=256)
def geometry(model: ModelSpec) -> Geometry:
    acts = [ACTIVATIONS[a].id for a in model.activations]
    modes = [FIRST if _spec.ACTIVATION_BY_NAME[a].d2_zero else SECOND for a in model.activations]
    return Geometry(
        sizes=np.array(model.sizes, dtype=np.int64),
        woff=np.array([o[0] for o in model.offsets], dtype=np.int64),
        boff=np.array([o[1] if model.bias else -1 for o in model.offsets], dtype=np.int64),
        acts=np.array(acts, dtype=np.int64),
        modes=np.array(modes, dtype=np.int64),
        loss=LOSSES[model.loss].id,
        cum=np.concatenate([[0], np.cumsum(model.sizes)]).astype(np.int64),
    )


def _writable(a: Array) -> Array:
    """The array itself, or a copy when it is read-only (so the kernels see one array type per dtype)."""
    return a if a.flags.writeable else a.copy()


class Workspace:
    """Scratch memory reused by every product of one linearization (or one set of GNH factors).

    One flat buffer, grown to the largest product seen (the largest k) and never shrunk, so a cached
    product allocates nothing but its result. ``lock`` lets one product at a time use it: threads sharing a
    linearization are serialized, products on different linearizations still run at once (nogil kernels).
    """

    def __init__(self, dtype: np.dtype) -> None:
        self.lock = threading.Lock()
        self._buf = np.empty(0, dtype=dtype)
        self._sizes: dict[tuple[int, int], int] = {}

    def get(self, kind: int, k: int, size: Callable[[], int]) -> Array:
        """The buffer, at least ``size()`` long for a product of ``kind`` on k directions (``size`` is called
        once per (kind, k)); call with ``lock`` held."""
        need = self._sizes.get((kind, k))
        if need is None:
            need = self._sizes[kind, k] = int(size())
        if self._buf.size < need:
            self._buf = np.empty(need, dtype=self._buf.dtype)
        return self._buf


@dataclass
class Lin:
    """A linearization: owned copies of θ and X and the flat caches of the passes (layout in ``_passes``)."""

    model: ModelSpec
    geo: Geometry
    theta: Array  # (N,) owned copy
    acts: Array  # A_0 = X (copy), A_1 … A_{L−1}, F
    d1: Array  # φ′_l, hidden layers
    d2: Array  # φ″_l (φ″_l ⊙ Γ_l once the backward pass ran); empty if every φ″ ≡ 0
    delta: Array  # Δ_L = s·∂ℓ/∂f after the forward pass; every Δ_l after the backward pass
    gamma: Array  # Γ_l, hidden layers (backward pass)
    aux: Array  # (n, d): p (softmax), σ(f)σ(−f) (sigmoid); unused for mse
    scale: float
    loss: float
    n: int
    grad: Array | None = None
    ws: Workspace = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ws = Workspace(self.theta.dtype)

    @property
    def dtype(self) -> np.dtype:
        return self.theta.dtype

    @property
    def F(self) -> Array:
        c, n = self.geo.cum, self.n
        return self.acts[n * c[-2]:].reshape(n, -1)


@dataclass
class RState:
    """The R-forward state of a block of k directions (every layer kept, for the R-backward pass)."""

    Vq: Array  # the directions in the (n_l, k, n_{l−1}) layout
    rz: Array  # R{Z_l}, l = 1..L
    ra: Array  # R{A_l}, l = 1..L−1
    output: Array  # R{f} = J V: (n, k, d), a view of rz


@dataclass
class Factors:
    """The precomputation of SPEC §3 (layout in ``_gnh``)."""

    model: ModelSpec
    geo: Geometry
    S: Array
    nu: Array
    AT: Array
    DT: Array  # φ′_lᵀ of the hidden layers and θ (the linearization's): for the carried layers of gnvp
    theta: Array
    scale: float
    n: int
    d: int
    ws: Workspace = field(init=False, repr=False)
    Sk: Array | None = field(default=None, init=False, repr=False)  # S sample-major: made by the first sampling

    def __post_init__(self) -> None:
        self.ws = Workspace(self.S.dtype)

    @property
    def dtype(self) -> np.dtype:
        return self.S.dtype


class NumbaBackend(BackendBase):
    """Compiled CPU engine: fused elementwise sweeps, BLAS GEMMs, one compiled call per product."""

    name = "numba"
    #: its passes over the factors run without the C++ kernels' prefetching: the factored product less its
    #: GEMMs took 1.4× (M) and 1.7× (W) the C++ engine's time, one vector, same process. On M with one vector
    #: this keeps the plain product, a tie here (factored ÷ plain 0.96–1.09 over five runs,
    #: bench/results/factored-routes-numba-*)
    factor_pass_cost = 1.5

    # ---- forward and gradient ----------------------------------------------------------------------------
    def forward(self, model: ModelSpec, theta: Array, X: Array) -> Array:
        g = geometry(model)
        return _passes.forward(_writable(theta), _writable(X), g.sizes, g.woff, g.boff, g.acts)

    def linearize(self, model: ModelSpec, theta: Array, X: Array, T: Array, backward: bool = True) -> Lin:
        g = geometry(model)
        n, dt = X.shape[0], theta.dtype
        c = g.cum
        acts = np.empty(n * c[-1], dtype=dt)
        acts[: X.size] = X.ravel()
        hidden = n * (c[-2] - c[1])
        d1 = np.empty(hidden, dtype=dt)
        d2 = np.empty(hidden if g.keeps_d2 else 0, dtype=dt)
        delta = np.empty(n * (c[-1] - c[1]), dtype=dt)
        aux = np.empty((n, model.sizes[-1]), dtype=dt)
        theta = np.array(theta, copy=True)
        scale = model.scale(n)
        value = _passes.linearize(theta, g.sizes, g.woff, g.boff, g.acts, g.modes, g.loss, _writable(T), acts, d1,
                                  d2, delta, aux, scale, float(model.l2))
        lin = Lin(model, g, theta, acts, d1, d2, delta, np.empty(hidden, dtype=dt), aux, scale, float(value), n)
        if backward:
            self.backward(lin)
        return lin

    def backward(self, lin: Lin) -> None:
        with lin.ws.lock:
            if lin.grad is not None:
                return
            g = lin.geo
            grad = np.empty_like(lin.theta)
            _passes.backward(lin.theta, g.sizes, g.woff, g.boff, g.modes, lin.acts, lin.d1, lin.d2, lin.delta,
                             lin.gamma, grad, float(lin.model.l2))
            lin.grad = grad

    # ---- the primitives of the R-operator (each call owns fresh buffers) -------------------------------------
    @staticmethod
    def _width(lin: Lin) -> int:
        return int(max(lin.model.sizes[1:]))

    def r_forward(self, lin: Lin, V: Array) -> RState:
        g = lin.geo
        N, k = V.shape
        n, c, d, dt = lin.n, g.cum, lin.model.sizes[-1], lin.dtype
        Vp, Vq = np.empty(N * k, dtype=dt), np.empty(N * k, dtype=dt)
        _passes.pack(g.sizes, g.woff, g.boff, _writable(V), Vp, Vq)
        rz = np.empty(n * k * (c[-1] - c[1]), dtype=dt)
        ra = np.empty(n * k * (c[-2] - c[1]), dtype=dt)
        _passes.r_forward(lin.theta, g.sizes, g.woff, g.boff, lin.acts, lin.d1, Vp, k, True, rz, ra)
        out = rz[n * k * (c[-2] - c[1]):].reshape(n, k, d)
        return RState(Vq, rz, ra, out)

    def output_hessian(self, lin: Lin, R: Array) -> Array:
        return _passes.output_hessian(lin.geo.loss, lin.aux, np.ascontiguousarray(R), lin.scale)

    def r_backward(self, lin: Lin, rf: RState, V: Array) -> Array:
        self.backward(lin)
        g = lin.geo
        N, k = V.shape
        RD = self.output_hessian(lin, rf.output)
        P, Q = np.empty(N * k, dtype=lin.dtype), np.empty(N * k, dtype=lin.dtype)
        bufs = np.empty(2 * lin.n * k * self._width(lin), dtype=lin.dtype)
        _passes.r_backward(lin.theta, g.sizes, g.woff, g.boff, g.modes, lin.acts, lin.d1, lin.d2, lin.delta, rf.rz,
                           rf.ra, rf.Vq, RD, P, Q, bufs)
        return _passes.unpack(g.sizes, g.woff, g.boff, k, P, Q, _writable(V), float(lin.model.l2), False)

    def gn_backward(self, lin: Lin, U: Array, V: Array | None = None) -> Array:
        g = lin.geo
        U = _writable(np.ascontiguousarray(U))
        k = U.shape[1]
        P = np.empty(lin.theta.size * k, dtype=lin.dtype)
        bufs = np.empty(2 * lin.n * k * self._width(lin), dtype=lin.dtype)
        _passes.gn_backward(lin.theta, g.sizes, g.woff, g.boff, lin.acts, lin.d1, U, P, bufs)
        l2 = float(lin.model.l2) if V is not None else 0.0
        V = _writable(V) if V is not None else np.empty((0, 0), dtype=P.dtype)
        return _passes.unpack(g.sizes, g.woff, g.boff, k, P, P[:0], V, l2, False)

    # ---- the four products: one compiled call each, over the linearization's workspace ---------------------
    def hvp(self, lin: Lin, V: Array) -> Array:
        self.backward(lin)
        g = lin.geo
        with lin.ws.lock:
            ws = lin.ws.get(_passes.HVP, V.shape[1], lambda: _passes.space(_passes.HVP, g.sizes, lin.n, V.shape[1]))
            return _passes.hvp(lin.theta, g.sizes, g.woff, g.boff, g.modes, g.loss, lin.acts, lin.d1, lin.d2,
                               lin.delta, lin.aux, lin.scale, float(lin.model.l2), _writable(V), ws)

    def gnvp(self, lin: Lin, V: Array) -> Array:
        g = lin.geo
        with lin.ws.lock:
            k = V.shape[1]
            ws = lin.ws.get(_passes.GNVP, k, lambda: _passes.space(_passes.GNVP, g.sizes, lin.n, k))
            return _passes.gnvp(lin.theta, g.sizes, g.woff, g.boff, g.loss, lin.acts, lin.d1, lin.aux, lin.scale,
                                float(lin.model.l2), _writable(V), ws)

    def jvp(self, lin: Lin, V: Array) -> Array:
        g = lin.geo
        with lin.ws.lock:
            ws = lin.ws.get(_passes.JVP, V.shape[1], lambda: _passes.space(_passes.JVP, g.sizes, lin.n, V.shape[1]))
            return _passes.jvp(lin.theta, g.sizes, g.woff, g.boff, lin.acts, lin.d1, _writable(V), ws)

    def vjp(self, lin: Lin, U: Array) -> Array:
        g = lin.geo
        with lin.ws.lock:
            ws = lin.ws.get(_passes.VJP, U.shape[1], lambda: _passes.space(_passes.VJP, g.sizes, lin.n, U.shape[1]))
            return _passes.vjp(lin.theta, g.sizes, g.woff, g.boff, lin.acts, lin.d1,
                               _writable(np.ascontiguousarray(U)), ws)

    # ---- entrywise Gauss–Newton (SPEC §3) -----------------------------------------------------------------------
    def empirical_fisher_diagonal(self, lin: Lin) -> Array:
        self.backward(lin)  # every Δ_l
        g, t = lin.geo, lin.dtype.type
        out = np.empty(lin.model.num_params, dtype=lin.dtype)
        _passes.fisher_diagonal(g.sizes, g.woff, g.boff, lin.acts, lin.delta, t(1.0 / lin.scale), t(lin.model.l2), out)
        return out

    def dense_curvature(self, lin: Lin, kind: str) -> Array:
        """Dense H or G from per-sample terms (``_dense``; the reference is ``backends/numpy/dense.py``)."""
        hessian = kind == "hessian"
        if hessian:
            self.backward(lin)  # Δ_l, Γ_l, and d2 becomes φ″_l ⊙ Γ_l
        g, n, model = lin.geo, lin.n, lin.model
        sizes, d, N = model.sizes, model.sizes[-1], model.num_params
        eye = np.ascontiguousarray(np.broadcast_to(np.eye(d, dtype=lin.dtype), (n, d, d)))
        s_hout = _passes.output_hessian(g.loss, lin.aux, eye, lin.scale)  # s·H_out per sample: (n, d, d)
        out = np.empty((N, N), dtype=lin.dtype)
        with lin.ws.lock:
            _dense.dense(lin.theta, g.sizes, g.woff, g.boff, g.modes, lin.acts, lin.d1, lin.d2, lin.delta, s_hout,
                         hessian, float(model.l2), _dense_chunk(sizes, n, model.bias, hessian), out)
        return out

    def gnh_precompute(self, lin: Lin) -> Factors:
        g = lin.geo
        S, nu, AT, DT = _gnh.precompute(lin.theta, g.sizes, g.woff, g.loss, lin.acts, lin.d1, lin.aux)
        return Factors(lin.model, g, S, nu, AT, DT, lin.theta, lin.scale, lin.n, lin.model.sizes[-1])

    def gnh_entries(self, fac: Factors, rows: Array, cols: Array) -> Array:
        g = fac.geo
        return _gnh.entries(fac.S, fac.AT, g.sizes, g.woff, _writable(rows), _writable(cols), fac.n, fac.d,
                            fac.scale, float(fac.model.l2))

    def gnh_block(self, fac: Factors, I: Array, J: Array) -> Array:
        g = fac.geo
        return _gnh.block(fac.S, fac.AT, g.sizes, g.woff, _writable(I), _writable(J), fac.n, fac.d, fac.scale,
                          float(fac.model.l2))

    def gnh_columns(self, fac: Factors, J: Array) -> Array:
        g = fac.geo
        return _gnh.columns(fac.S, fac.AT, g.sizes, g.woff, g.boff, _writable(J), fac.n, fac.d, fac.scale,
                            float(fac.model.l2))

    def gnh_layer_factors(self, fac: Factors, l: int) -> tuple[Array, Array]:
        g, n, d = fac.geo, fac.n, fac.d
        n_l, n_prev = int(g.sizes[l]), int(g.sizes[l - 1])
        s0, a0 = n * d * int(g.cum[l] - g.cum[1]), n * int(g.cum[l - 1])
        S = fac.S[s0 : s0 + n_l * n * d].reshape(n_l, d, n).transpose(0, 2, 1)  # stored sample-fastest
        AT = fac.AT[a0 : a0 + n_prev * n].reshape(n_prev, n)
        S.flags.writeable = AT.flags.writeable = False  # views of the engine's buffers
        return S, AT.T

    def gnh_gnvp(self, fac: Factors, V: Array, carry: Sequence[bool] | None = None) -> Array:
        g = fac.geo
        flags = np.zeros(g.sizes.size - 1, np.uint8)
        if carry:
            flags[:] = carry
        V = _writable(np.ascontiguousarray(V))
        with fac.ws.lock:
            ws = fac.ws.get(0, V.shape[1], lambda: _gnh.gnvp_space(g.sizes, fac.n, fac.d, V.shape[1]))
            return _gnh.gnvp(fac.S, fac.AT, fac.DT, fac.theta, g.sizes, g.woff, g.boff, fac.n, fac.d, fac.scale,
                             float(fac.model.l2), V, V.reshape(-1), flags, ws)

    def gnh_diagonal(self, fac: Factors) -> Array:
        g = fac.geo
        return _gnh.diagonal(fac.nu, fac.AT, g.sizes, g.woff, g.boff, fac.n, fac.scale, float(fac.model.l2))

    def gnh_sample(self, fac: Factors, rows: Array, cols: Array, s: int, seed: int | None) -> Array:
        return self.gnh_sample_groups(fac, rows, cols, s, 1, seed)[0]

    def gnh_sample_groups(self, fac: Factors, rows: Array, cols: Array, s: int, groups: int,
                          seed: int | None) -> Array:
        g = fac.geo
        if fac.Sk is None:  # a draw's d factor values adjacent (as much memory again as S, when d > 1)
            fac.Sk = fac.S if fac.d == 1 else _gnh.sample_major(fac.S, fac.n, fac.d)
        rng = np.random.default_rng(seed)
        out = np.empty((groups, rows.size), dtype=fac.dtype)
        step = max(1, (1 << 22) // (groups * s))  # bound the uniforms held at once to ~2²² numbers
        rows, cols = _writable(rows), _writable(cols)
        for c0 in range(0, rows.size, step):
            u = rng.random((min(step, rows.size - c0), groups * s))
            out[:, c0:c0 + step] = _gnh.sample(fac.Sk, fac.nu, fac.AT, g.sizes, g.woff, rows[c0:c0 + step],
                                               cols[c0:c0 + step], u, groups, fac.n, fac.d, fac.scale,
                                               float(fac.model.l2))
        return out


def _dense_chunk(sizes: tuple[int, ...], n: int, bias: bool, hessian: bool, budget: int = 1 << 21) -> int:
    """Samples per chunk of ``_dense.dense``: its per-sample work arrays stay near ``budget`` numbers."""
    L, b = len(sizes) - 1, int(bias)
    per = sizes[-1] ** 2 + sum(s * s for s in sizes[1:L]) + sum(a + b for a in sizes[:L])
    if hessian:
        per += sum(sizes[j] * sizes[m] for m in range(1, L) for j in range(m + 1, L))
    pairs = [(l, m) for l in range(1, L + 1) for m in range(1, l + 1)]
    per += 2 * max(sizes[l] * sizes[m] for l, m in pairs) + max((sizes[l - 1] + b) * sizes[m] for l, m in pairs)
    per += max([sizes[l + 1] * sizes[l] for l in range(1, L)] + [sizes[-1] ** 2])
    return max(1, min(n, budget // per))
