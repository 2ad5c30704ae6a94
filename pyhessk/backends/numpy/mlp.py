"""The NumPy reference engine: every primitive pass of ``backends._base.Backend``, written plainly.

Arrays are batch-major (one sample per row). A block of k directions keeps its R-quantities in the
layout (n, k, n_l), so that every product with W_l is one GEMM over n·k rows and every product with the
block of direction weights V_l is one GEMM with k·n_l columns: the k vectors share each GEMM and
nothing loops over columns. GEMM counts per layer (l ≥ 2 / l = 1) are noted at each pass; they are
those of ALGORITHMS.md §10.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ... import _spec
from ..._arrays import namespace_of
from .._base import BackendBase, ModelSpec
from .activations import ACTIVATIONS
from .dense import dense_curvature
from .losses import LOSSES

Array = np.ndarray


@dataclass
class Lin:
    """A linearization: the caches of one forward (and possibly backward) pass."""

    model: ModelSpec
    theta: Array  # (N,) owned copy
    Ws: list[Array]  # W_l, l = 1..L (views into theta)
    bs: list[Array | None]
    A: list[Array]  # A_0 = X, ..., A_{L−1}: (n, n_l)
    dphi: list[Array]  # φ′_l(Z_l), l = 1..L−1: (n, n_l)
    d2phi: list[Array | None]  # φ″_l(Z_l); None where φ″ ≡ 0 (piecewise-linear activations)
    F: Array  # (n, d) network output
    aux: Array | None  # what the loss head keeps for H_out (p, or σ(1−σ))
    E: Array  # s·∂ℓ/∂f, (n, d): the output residual Δ_L
    scale: float
    loss: float
    n: int
    grad: Array | None = None
    delta: list[Array] = field(default_factory=list)  # Δ_l = ∂L/∂Z_l, l = 1..L (computed by backward)
    gamma: list[Array] = field(default_factory=list)  # Γ_l = ∂L/∂A_l, l = 1..L−1

    @property
    def dtype(self) -> np.dtype:
        return self.theta.dtype


@dataclass
class RState:
    VT: Array  # the directions, transposed: (k, N)
    RZ: list[Array]  # R{Z_l}, l = 1..L: (n, k, n_l)
    RA: list[Array | None]  # R{A_l}, l = 0..L−1 (R{A_0} = 0 → None)
    output: Array  # R{f} = R{Z_L}: (n, k, d)


@dataclass
class Factors:
    model: ModelSpec
    AT: list[Array]  # a_{l−1,k} unit-major: AT[l−1] is A_{l−1}ᵀ, (n_{l−1}, n), l = 1..L
    S: list[Array]  # S_{l,k} unit-major: S[l−1][i, k, :] = S_{l,k}[:, i], (n_l, n, d)
    nu: list[Array]  # ν_{l,k,i} = ‖S_{l,k}[:, i]‖: (n_l, n)
    scale: float
    n: int
    d: int
    Ws: list[Array]  # W_l, l = 1..L, and φ′_l, l = 1..L−1 (n, n_l): the linearization's, for carried layers
    dphi: list[Array]

    @property
    def dtype(self) -> np.dtype:
        return self.S[0].dtype


def _params(model: ModelSpec, theta: Array) -> tuple[list[Array], list[Array | None]]:
    pairs = [model.layer_views(theta, l) for l in range(1, model.num_layers + 1)]
    return [W for W, _ in pairs], [b for _, b in pairs]


def _affine(A: Array, W: Array, b: Array | None) -> Array:
    Z = A @ W.T
    if b is not None:
        Z += b
    return Z


def _blocks_t(model: ModelSpec, VT: Array, l: int) -> tuple[Array, Array | None]:
    """Views of layer l inside a transposed block VT (k, N): V_l as (k, n_l, n_{l−1}), v_l as (k, n_l)."""
    w0, b0, end = model.offsets[l - 1]
    k = VT.shape[0]
    VW = VT[:, w0:b0].reshape(k, model.sizes[l], model.sizes[l - 1])
    return VW, (VT[:, b0:end] if model.bias else None)


#: For each layer l = 1..L, None (its R-values meet S_l) or (W_{l+1}, φ′_l (n, n_l)): layer l is carried, its
#: R-values go on through W_{l+1} instead (ALGORITHMS §4.4 with S_l = Φ′_l W_{l+1}ᵀ S_{l+1} unrolled once).
Links = Sequence["tuple[Array, Array] | None"]


def factor_forward(model: ModelSpec, layers: list[tuple[Array, Array]], VT: Array, links: Links | None = None) -> Array:
    """Ŝ V / √s from stored GNH factors: u_k = Σ_l S_{l,k}(V_l a_{l−1,k} + v_l) for VT (k, N) → (n, k, d).

    ``layers[l−1]`` = (S_l as (n_l, n, d), A_{l−1} as (n, n_{l−1})), any strides. Per layer one GEMM
    P_l = A_{l−1} V_lᵀ and one contraction with S_l; a carried layer (``links``) adds (P_l ⊙ φ′_l) W_{l+1}ᵀ to
    P_{l+1} instead.
    """
    xp = namespace_of(VT)  # NumPy, or CuPy for the Woodbury solve on a device snapshot
    k = VT.shape[0]
    S0, A0 = layers[0]
    u = xp.zeros((A0.shape[0], k, S0.shape[2]), dtype=xp.result_type(VT.dtype, S0.dtype))
    below = None  # the carried (n, k, n_l) of the layer below
    for l, (S, A) in enumerate(layers, start=1):
        VW, vb = _blocks_t(model, VT, l)
        P = (A @ VW.reshape(k * S.shape[0], -1).T).reshape(A.shape[0], k, S.shape[0])  # A_{l−1} V_lᵀ
        if vb is not None:
            P += vb
        if below is not None:
            P += below
        link = links[l - 1] if links else None
        if link is None:
            u += xp.einsum("isc,ski->skc", S, P, optimize=k > 1)  # k = 1: the direct loop, no planning
            below = None
        else:
            W_next, dphi = link
            m = P.shape[0] * k  # one GEMM over every (sample, vector) row, not n little ones
            below = ((P * dphi[:, None, :]).reshape(m, -1) @ W_next.T).reshape(P.shape[0], k, -1)
    return u


def factor_backward(model: ModelSpec, layers: list[tuple[Array, Array]], u: Array, links: Links | None = None) -> Array:
    """Ŝᵀ U / √s from stored GNH factors for u (n, k, d) → (k, N): per layer the contraction Q_l = S_l u
    (for a carried layer Q_l = φ′_l ⊙ Q_{l+1} W_{l+1}) and one GEMM Q_lᵀ A_{l−1} for the weight block (the bias
    block sums Q_l over samples)."""
    xp = namespace_of(u)
    n, k, _ = u.shape
    outT = xp.empty((k, model.num_params), dtype=xp.result_type(u.dtype, layers[0][0].dtype))
    above = None  # Q_{l+1}
    for l in range(len(layers), 0, -1):
        S, A = layers[l - 1]
        GW, gb = _blocks_t(model, outT, l)
        link = links[l - 1] if links else None
        if link is None:
            Q = xp.einsum("isc,skc->ski", S, u, optimize=k > 1)  # (n, k, n_l)
        else:
            W_next, dphi = link
            Q = (above.reshape(n * k, -1) @ W_next).reshape(n, k, -1) * dphi[:, None, :]
        GW[...] = (Q.reshape(n, k * S.shape[0]).T @ A).reshape(GW.shape)
        if gb is not None:
            gb[...] = Q.sum(axis=0, dtype=np.float64)  # sums over samples in float64
        above = Q
    return outT


class NumpyBackend(BackendBase):
    """The readable reference engine (and the oracle every other engine is compared with)."""

    name = "numpy"
    #: its contractions are einsum calls over factors stored (n_l, n, d), d fastest: with one vector the
    #: factored product less its GEMMs took 3.7× (M) and 4.4× (W) the C++ engine's time; blocks fare better
    #: (einsum's BLAS path). With this price c.gnvp keeps the plain product on P, M and D with one vector,
    #: where the factored one ran 1.01–1.35× slower (bench/results/factored-routes-numpy-*)
    factor_pass_cost = 3.0

    # ---- forward and gradient: 1 GEMM per layer forward, 2 (l = 1: 1) backward --------------------
    @np.errstate(over="ignore", invalid="ignore")  # the API layer turns overflow into FloatingPointError
    def forward(self, model: ModelSpec, theta: Array, X: Array) -> Array:
        Ws, bs = _params(model, theta)
        A = X
        for l, (W, b) in enumerate(zip(Ws, bs), start=1):
            Z = _affine(A, W, b)
            A = ACTIVATIONS[model.activations[l - 1]].f(Z) if l < model.num_layers else Z
        return A

    @np.errstate(over="ignore", invalid="ignore")
    def linearize(self, model: ModelSpec, theta: Array, X: Array, T: Array, backward: bool = True) -> Lin:
        theta = np.array(theta, copy=True)
        Ws, bs = _params(model, theta)
        L, n = model.num_layers, X.shape[0]
        A, dphi, d2phi = [np.array(X, copy=True)], [], []
        for l in range(1, L):
            Z = _affine(A[-1], Ws[l - 1], bs[l - 1])
            name = model.activations[l - 1]
            act = ACTIVATIONS[name]
            a = act.f(Z)
            d1, d2 = act.derivs(Z, a)
            A.append(a)
            dphi.append(d1)
            d2phi.append(None if _spec.ACTIVATION_BY_NAME[name].d2_zero else d2)
        F = _affine(A[-1], Ws[-1], bs[-1])
        ell, dl, aux = LOSSES[model.loss].head(F, T)
        scale = model.scale(n)
        value = scale * float(np.sum(ell, dtype=np.float64))
        if model.l2:
            value += 0.5 * model.l2 * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in Ws)
        lin = Lin(model, theta, Ws, bs, A, dphi, d2phi, F, aux, dl * F.dtype.type(scale), scale, value, n)
        if backward:
            self.backward(lin)
        return lin

    def backward(self, lin: Lin) -> None:
        if lin.grad is not None:
            return
        model = lin.model
        L = model.num_layers
        grad = np.empty_like(lin.theta)
        delta, gamma = [None] * L, [None] * (L - 1)
        D = lin.E
        for l in range(L, 0, -1):
            gW, gb = model.layer_views(grad, l)
            np.matmul(D.T, lin.A[l - 1], out=gW)
            if model.l2:
                gW += model.l2 * lin.Ws[l - 1]
            if gb is not None:
                gb[...] = D.sum(axis=0, dtype=np.float64)
            delta[l - 1] = D
            if l > 1:
                G = D @ lin.Ws[l - 1]
                gamma[l - 2] = G
                D = lin.dphi[l - 2] * G
        lin.delta, lin.gamma, lin.grad = delta, gamma, grad

    # Blocks of directions are transposed once on entry, VT = Vᵀ (k, N), so that each layer's k direction
    # matrices are contiguous rows; results are built as (k, N) and transposed once on exit.

    # ---- R-forward: 2 GEMMs per layer (l = 1: 1) ---------------------------------------------------
    def r_forward(self, lin: Lin, V: Array) -> RState:
        model = lin.model
        n, k = lin.n, V.shape[1]
        VT = np.ascontiguousarray(V.T)
        RZs, RAs = [], [None]
        for l in range(1, model.num_layers + 1):
            VW, vb = _blocks_t(model, VT, l)
            n_l, n_prev = VW.shape[1], VW.shape[2]
            # A_{l−1} [V_l^(1); …; V_l^(k)]ᵀ: one GEMM (n, n_{l−1}) @ (n_{l−1}, k·n_l)
            RZ = (lin.A[l - 1] @ VW.reshape(k * n_l, n_prev).T).reshape(n, k, n_l)
            RA = RAs[-1]
            if RA is not None:  # W_l R{A_{l−1}}: one GEMM over n·k rows
                RZ += (RA.reshape(n * k, n_prev) @ lin.Ws[l - 1].T).reshape(n, k, n_l)
            if vb is not None:
                RZ += vb
            RZs.append(RZ)
            if l < model.num_layers:
                RAs.append(lin.dphi[l - 1][:, None, :] * RZ)
        return RState(VT, RZs, RAs, RZs[-1])

    def output_hessian(self, lin: Lin, R: Array) -> Array:
        U = LOSSES[lin.model.loss].hout_apply(lin.aux, R)
        return U * U.dtype.type(lin.scale)

    # ---- R-backward: 4 GEMMs per layer (l = 1: 1); with the R-forward, 6 (l = 1: 2) ----------------
    def r_backward(self, lin: Lin, rf: RState, V: Array) -> Array:
        self.backward(lin)
        model = lin.model
        n, k = lin.n, V.shape[1]
        outT = np.empty((k, model.num_params), dtype=V.dtype)
        RD = self.output_hessian(lin, rf.output)  # R{Δ_L}
        for l in range(model.num_layers, 0, -1):
            VW, _ = _blocks_t(model, rf.VT, l)
            HW, hb = _blocks_t(model, outT, l)
            n_l, n_prev = VW.shape[1], VW.shape[2]
            # R{Δ_l}ᵀ A_{l−1} for all directions: (k·n_l, n) @ (n, n_{l−1})
            HW[...] = (RD.reshape(n, k * n_l).T @ lin.A[l - 1]).reshape(k, n_l, n_prev)
            if l > 1:  # Δ_lᵀ R{A_{l−1}}: (n_l, n) @ (n, k·n_{l−1})
                HW += (lin.delta[l - 1].T @ rf.RA[l - 1].reshape(n, k * n_prev)).reshape(n_l, k, n_prev).transpose(1, 0, 2)
            if model.l2:
                HW += model.l2 * VW
            if hb is not None:
                hb[...] = RD.sum(axis=0, dtype=np.float64)
            if l > 1:
                # R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l, then R{Δ_{l−1}} = φ′ R{Γ} + φ″ R{Z} Γ
                VWs = VW.transpose(1, 0, 2).reshape(n_l, k * n_prev)
                RG = (lin.delta[l - 1] @ VWs).reshape(n, k, n_prev)
                RG += (RD.reshape(n * k, n_l) @ lin.Ws[l - 1]).reshape(n, k, n_prev)
                RG *= lin.dphi[l - 2][:, None, :]
                if lin.d2phi[l - 2] is not None:
                    RG += (lin.d2phi[l - 2] * lin.gamma[l - 2])[:, None, :] * rf.RZ[l - 2]
                RD = RG
        return np.ascontiguousarray(outT.T)

    # ---- Gauss–Newton backward: 2 GEMMs per layer (l = 1: 1); no gradient pass needed -------------
    def gn_backward(self, lin: Lin, U: Array, V: Array | None = None) -> Array:
        model = lin.model
        n, k = lin.n, U.shape[1]
        outT = np.empty((k, model.num_params), dtype=U.dtype)
        VT = V.T if V is not None and model.l2 else None  # λ P_W V is added layer by layer
        D = U
        for l in range(model.num_layers, 0, -1):
            HW, hb = _blocks_t(model, outT, l)
            n_l, n_prev = HW.shape[1], HW.shape[2]
            HW[...] = (D.reshape(n, k * n_l).T @ lin.A[l - 1]).reshape(k, n_l, n_prev)
            if VT is not None:
                HW += model.l2 * _blocks_t(model, VT, l)[0]
            if hb is not None:
                hb[...] = D.sum(axis=0, dtype=np.float64)
            if l > 1:
                D = (D.reshape(n * k, n_l) @ lin.Ws[l - 1]).reshape(n, k, n_prev)
                D *= lin.dphi[l - 2][:, None, :]
        return np.ascontiguousarray(outT.T)

    # ---- dense H and G from per-sample second-order terms (backends/numpy/dense.py) -------------------
    def dense_curvature(self, lin: Lin, kind: str) -> Array:
        model = lin.model
        hessian = kind == "hessian"
        if hessian:
            self.backward(lin)
        d = model.sizes[-1]
        eye = np.broadcast_to(np.eye(d, dtype=lin.dtype), (lin.n, d, d))
        head = LOSSES[model.loss]

        def s_hout(k0: int, k1: int) -> Array:  # s·H_out per sample: H_out applied to the d unit vectors
            aux = None if lin.aux is None else lin.aux[k0:k1]
            return head.hout_apply(aux, eye[k0:k1]) * lin.dtype.type(lin.scale)

        d2gamma = [None] * (model.num_layers - 1)  # Γ_l ⊙ φ″_l: H only
        if hessian:
            d2gamma = [None if d2 is None else d2 * g for d2, g in zip(lin.d2phi, lin.gamma)]
        return dense_curvature(model, lin.Ws, lin.A, lin.dphi, d2gamma, lin.delta if hessian else None, s_hout, lin.n)

    def empirical_fisher_diagonal(self, lin: Lin) -> Array:
        self.backward(lin)
        model = lin.model
        out = np.empty(model.num_params, dtype=lin.dtype)
        inv_s = lin.dtype.type(1.0 / lin.scale)
        for l in range(1, model.num_layers + 1):
            GW, gb = model.layer_views(out, l)
            D = lin.delta[l - 1]
            D2 = D * (D * inv_s)  # s·(∂ℓ_k/∂z)² per sample, from Δ = s·∂ℓ_k/∂z
            np.matmul(D2.T, np.square(lin.A[l - 1]), out=GW)
            if model.l2:
                GW += lin.dtype.type(model.l2)
            if gb is not None:
                gb[...] = D2.sum(axis=0, dtype=np.float64)
        return out

    # ---- entrywise Gauss–Newton (SPEC §3) -------------------------------------------------------------
    # Factors are stored unit-major, S_l as (n_l, n, d) and A_{l−1}ᵀ as (n_{l−1}, n), so that gathering the
    # factor of one parameter reads contiguous memory.
    def gnh_precompute(self, lin: Lin) -> Factors:
        model = lin.model
        n, d = lin.F.shape
        S = [None] * model.num_layers
        S[-1] = np.ascontiguousarray(LOSSES[model.loss].hout_factor(lin.aux, lin.F).transpose(2, 0, 1))
        for l in range(model.num_layers - 1, 0, -1):
            # S_l = D_l W_{l+1}ᵀ S_{l+1}: one GEMM (n_l, n_{l+1}) @ (n_{l+1}, n·d)
            n_next, n_l = lin.Ws[l].shape
            S_l = (lin.Ws[l].T @ S[l].reshape(n_next, n * d)).reshape(n_l, n, d)
            S_l *= lin.dphi[l - 1].T[:, :, None]
            S[l - 1] = S_l
        nu = [np.sqrt(np.einsum("ikd,ikd->ik", S_l, S_l)) for S_l in S]
        AT = [np.ascontiguousarray(A.T) for A in lin.A]
        return Factors(model, AT, S, nu, lin.scale, n, d, lin.Ws, lin.dphi)

    @staticmethod
    def _gather(fac: Factors, idx: Array) -> Array:
        """x_{p,k} = a_{l−1,k}[j] S_{l,k}[:, i] for every index p and sample k: (len(idx), n, d)."""
        out = np.empty((idx.size, fac.n, fac.d), dtype=fac.dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            c = col[sel]
            a = np.where(c[:, None] >= 0, fac.AT[l - 1][np.maximum(c, 0)], 1)
            out[sel] = fac.S[l - 1][row[sel]] * a[:, :, None]
        return out

    @staticmethod
    def _gather_norms(fac: Factors, idx: Array) -> Array:
        """‖x_{p,k}‖ = |a_{l−1,k}[j]| ν_{l,k,i}: (len(idx), n)."""
        out = np.empty((idx.size, fac.n), dtype=fac.dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            c = col[sel]
            a = np.where(c[:, None] >= 0, np.abs(fac.AT[l - 1][np.maximum(c, 0)]), 1)
            out[sel] = fac.nu[l - 1][row[sel]] * a
        return out

    @staticmethod
    def _l2_diag(fac: Factors, rows: Array, cols: Array) -> Array:
        """λ where rows[t] == cols[t] is a weight coordinate, else 0."""
        if not fac.model.l2:
            return np.zeros(rows.shape, dtype=fac.dtype)
        return np.where((rows == cols) & (fac.model.decode(rows)[2] >= 0), fac.model.l2, 0).astype(fac.dtype)

    @staticmethod
    def _chunk(fac: Factors, per_item: int) -> int:
        """How many entries to process at once so that the gathered factors stay near 2²² numbers."""
        return max(1, (1 << 22) // max(per_item, 1))

    def gnh_entries(self, fac: Factors, rows: Array, cols: Array) -> Array:
        out = np.empty(rows.size, dtype=fac.dtype)
        step = self._chunk(fac, fac.n * fac.d)
        for s in range(0, rows.size, step):
            X = self._gather(fac, rows[s : s + step])
            Y = self._gather(fac, cols[s : s + step])
            out[s : s + step] = np.einsum("mkd,mkd->m", X, Y, dtype=np.float64)
        out *= out.dtype.type(fac.scale)
        return out + self._l2_diag(fac, rows, cols)

    def gnh_block(self, fac: Factors, I: Array, J: Array) -> Array:
        nd = fac.n * fac.d
        XI = self._gather(fac, I).reshape(I.size, nd)
        YJ = self._gather(fac, J).reshape(J.size, nd)
        G = XI @ YJ.T  # one GEMM over the stacked (n·d)-long factors
        G *= G.dtype.type(fac.scale)
        if fac.model.l2:
            G += self._l2_diag(fac, I[:, None], J[None, :])
        return G

    def gnh_columns(self, fac: Factors, J: Array) -> Array:
        model = fac.model
        m = J.size
        U = self._gather(fac, J)  # (m, n, d)
        outT = np.empty((m, model.num_params), dtype=fac.dtype)
        for l in range(1, model.num_layers + 1):
            GW, gb = _blocks_t(model, outT, l)
            n_l, n_prev = GW.shape[1], GW.shape[2]
            T = np.einsum("ikd,mkd->kmi", fac.S[l - 1], U, optimize=True)  # S_{l,k}ᵀ u_k: (n, m, n_l)
            GW[...] = (T.reshape(fac.n, m * n_l).T @ fac.AT[l - 1].T).reshape(m, n_l, n_prev)
            if gb is not None:
                gb[...] = T.sum(axis=0, dtype=np.float64)
        out = np.ascontiguousarray(outT.T)
        out *= out.dtype.type(fac.scale)
        if model.l2:
            out[J, np.arange(m)] += self._l2_diag(fac, J, J)
        return out

    def gnh_layer_factors(self, fac: Factors, l: int) -> tuple[Array, Array]:
        return fac.S[l - 1], fac.AT[l - 1].T

    def gnh_gnvp(self, fac: Factors, V: Array, carry: Sequence[bool] | None = None) -> Array:
        """G V from the stored factors: s·Ŝᵀ(Ŝ V) (+ λ P_W V), 2 layer-GEMMs per layer (ALGORITHMS §4.4);
        the hidden layers flagged in ``carry`` take the R-forward step through W_{l+1} instead of S_l."""
        L = fac.model.num_layers
        layers = [(fac.S[l], fac.AT[l].T) for l in range(L)]
        links = [(fac.Ws[l], fac.dphi[l - 1]) if carry and l < L and carry[l - 1] else None for l in range(1, L + 1)]
        VT = np.ascontiguousarray(V.T)
        u = factor_forward(fac.model, layers, VT, links)
        u *= u.dtype.type(fac.scale)
        out = np.ascontiguousarray(factor_backward(fac.model, layers, u, links).T)
        if fac.model.l2:
            out += fac.model.l2 * fac.model.weight_mask(out.dtype)[:, None] * V
        return out

    def gnh_diagonal(self, fac: Factors) -> Array:
        model = fac.model
        out = np.empty(model.num_params, dtype=fac.dtype)
        for l in range(1, model.num_layers + 1):
            GW, gb = model.layer_views(out, l)
            nu2 = fac.nu[l - 1] ** 2
            np.matmul(nu2, (fac.AT[l - 1] ** 2).T, out=GW)  # O(n) per entry
            if gb is not None:
                gb[...] = nu2.sum(axis=1)
        out *= out.dtype.type(fac.scale)
        if model.l2:
            out += model.l2 * model.weight_mask(out.dtype)
        return out

    def gnh_sample(self, fac: Factors, rows: Array, cols: Array, s: int, seed: int | None) -> Array:
        return self.gnh_sample_groups(fac, rows, cols, s, 1, seed)[0]

    def gnh_sample_groups(self, fac: Factors, rows: Array, cols: Array, s: int, groups: int, seed: int | None) -> Array:
        rng = np.random.default_rng(seed)
        out = np.empty((groups, rows.size), dtype=fac.dtype)
        step = self._chunk(fac, fac.n + groups * s * fac.d)
        for c0 in range(0, rows.size, step):
            r, c = rows[c0 : c0 + step], cols[c0 : c0 + step]
            out[:, c0 : c0 + step] = self._sample_chunk(fac, r, c, s, groups, rng)
        return out + self._l2_diag(fac, rows, cols)

    def _sample_chunk(self, fac: Factors, rows: Array, cols: Array, s: int, groups: int, rng: np.random.Generator) -> Array:
        """(groups, m) means of s draws each; the m sampling distributions are built once for all groups."""
        n, m = fac.n, rows.size
        w = self._gather_norms(fac, rows) * self._gather_norms(fac, cols)  # π ∝ ‖x_k‖‖y_k‖: (m, n)
        total = w.sum(axis=1)
        live = total > 0
        safe = np.where(live, total, 1)
        cdf = np.cumsum(w, axis=1) / safe[:, None]
        cdf[:, -1] = 1  # guard the last bin against rounding
        # Inverse-CDF draws for all m entries at once: shifting row t by t makes the stacked CDFs one
        # increasing sequence, so a single searchsorted serves every entry.
        shift = np.arange(m)
        u = rng.random((m, groups * s))
        pos = np.searchsorted((cdf + shift[:, None]).ravel(), (u + shift[:, None]).ravel(), side="right")
        k = np.minimum(pos.reshape(m, groups * s) - shift[:, None] * n, n - 1)  # (m, g·s) sample indices
        dots = (self._sampled_factor(fac, rows, k) * self._sampled_factor(fac, cols, k)).sum(axis=2)
        prob = np.take_along_axis(w, k, axis=1) / safe[:, None]
        ratio = np.where(prob > 0, dots / np.where(prob > 0, prob, 1), 0)
        est = ratio.reshape(m, groups, s).mean(axis=2).T  # (groups, m)
        return np.where(live, est * fac.scale, 0).astype(fac.dtype)

    @staticmethod
    def _sampled_factor(fac: Factors, idx: Array, k: Array) -> Array:
        """x_{idx[t], k[t, j]} for sample indices k (m, s): (m, s, d)."""
        m, s = k.shape
        out = np.empty((m, s, fac.d), dtype=fac.dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            ks = k[sel]
            x = fac.S[l - 1][row[sel][:, None], ks]  # (|sel|, s, d)
            c = col[sel]
            a = np.where(c[:, None] >= 0, fac.AT[l - 1][np.maximum(c, 0)[:, None], ks], 1)
            out[sel] = x * a[:, :, None]
        return out
