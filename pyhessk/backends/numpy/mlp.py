"""The NumPy reference engine: every primitive pass of ``backends._base.Backend``, written plainly.

Arrays are batch-major (one sample per row). A block of k directions keeps its R-quantities in the
layout (n, k, n_l), so that every product with W_l is one GEMM over n·k rows and every product with the
block of direction weights V_l is one GEMM with k·n_l columns: the k vectors share each GEMM and
nothing loops over columns. GEMM counts per layer (l ≥ 2 / l = 1) are noted at each pass; they are
those of ALGORITHMS.md §10.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._base import ModelSpec
from .activations import ACTIVATIONS
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
    d2phi: list[Array]  # φ″_l(Z_l)
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
    RZ: list[Array]  # R{Z_l}, l = 1..L: (n, k, n_l)
    RA: list[Array | None]  # R{A_l}, l = 0..L−1 (R{A_0} = 0 → None)
    output: Array  # R{f} = R{Z_L}: (n, k, d)


@dataclass
class Factors:
    model: ModelSpec
    A: list[Array]  # a_{l−1,k}: A[l−1] is (n, n_{l−1}), l = 1..L
    S: list[Array]  # S_{l,k}: S[l−1] is (n, d, n_l)
    nu: list[Array]  # ν_{l,k,i} = ‖S_{l,k}[:, i]‖: (n, n_l)
    scale: float
    n: int
    d: int


def _params(model: ModelSpec, theta: Array) -> tuple[list[Array], list[Array | None]]:
    pairs = [model.layer_views(theta, l) for l in range(1, model.num_layers + 1)]
    return [W for W, _ in pairs], [b for _, b in pairs]


def _affine(A: Array, W: Array, b: Array | None) -> Array:
    Z = A @ W.T
    if b is not None:
        Z += b
    return Z


def _direction_blocks(model: ModelSpec, V: Array, l: int) -> tuple[Array, Array | None]:
    """V_l as (n_l, n_{l−1}, k) and v_l as (n_l, k): views into V (N, k)."""
    return model.layer_views(V, l)


class NumpyBackend:
    """The readable reference engine (and the oracle every other engine is compared with)."""

    name = "numpy"

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
            act = ACTIVATIONS[model.activations[l - 1]]
            a = act.f(Z)
            d1, d2 = act.derivs(Z, a)
            A.append(a)
            dphi.append(d1)
            d2phi.append(d2)
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
                gb[...] = D.sum(axis=0)
            delta[l - 1] = D
            if l > 1:
                G = D @ lin.Ws[l - 1]
                gamma[l - 2] = G
                D = lin.dphi[l - 2] * G
        lin.delta, lin.gamma, lin.grad = delta, gamma, grad

    # ---- R-forward: 2 GEMMs per layer (l = 1: 1) ---------------------------------------------------
    def r_forward(self, lin: Lin, V: Array) -> RState:
        model = lin.model
        n, k = lin.n, V.shape[1]
        RZs, RAs = [], [None]
        for l in range(1, model.num_layers + 1):
            VW, vb = _direction_blocks(model, V, l)
            n_l, n_prev = VW.shape[0], VW.shape[1]
            # A_{l−1} V_lᵀ for all k directions at once: (n, n_{l−1}) @ (n_{l−1}, k·n_l)
            RZ = (lin.A[l - 1] @ VW.transpose(1, 2, 0).reshape(n_prev, k * n_l)).reshape(n, k, n_l)
            RA = RAs[-1]
            if RA is not None:
                RZ += (RA.reshape(n * k, n_prev) @ lin.Ws[l - 1].T).reshape(n, k, n_l)
            if vb is not None:
                RZ += vb.T
            RZs.append(RZ)
            if l < model.num_layers:
                RAs.append(lin.dphi[l - 1][:, None, :] * RZ)
        return RState(RZs, RAs, RZs[-1])

    def output_hessian(self, lin: Lin, R: Array) -> Array:
        U = LOSSES[lin.model.loss].hout_apply(lin.aux, R)
        return U * U.dtype.type(lin.scale)

    # ---- R-backward: 4 GEMMs per layer (l = 1: 1); with the R-forward, 6 (l = 1: 2) ----------------
    def r_backward(self, lin: Lin, rf: RState, V: Array) -> Array:
        self.backward(lin)
        model = lin.model
        n, k = lin.n, V.shape[1]
        out = np.empty_like(V)
        RD = self.output_hessian(lin, rf.output)  # R{Δ_L}
        for l in range(model.num_layers, 0, -1):
            VW, vb = _direction_blocks(model, V, l)
            HW, hb = model.layer_views(out, l)
            n_l, n_prev = VW.shape[0], VW.shape[1]
            # R{Δ_l}ᵀ A_{l−1} for all directions: (k·n_l, n) @ (n, n_{l−1})
            HW[...] = (RD.reshape(n, k * n_l).T @ lin.A[l - 1]).reshape(k, n_l, n_prev).transpose(1, 2, 0)
            if l > 1:
                # Δ_lᵀ R{A_{l−1}}: (n_l, n) @ (n, k·n_{l−1})
                HW += (lin.delta[l - 1].T @ rf.RA[l - 1].reshape(n, k * n_prev)).reshape(n_l, k, n_prev).transpose(0, 2, 1)
            if model.l2:
                HW += model.l2 * VW
            if hb is not None:
                hb[...] = RD.sum(axis=0).T
            if l > 1:
                # R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l
                RG = (lin.delta[l - 1] @ VW.transpose(0, 2, 1).reshape(n_l, k * n_prev)).reshape(n, k, n_prev)
                RG += (RD.reshape(n * k, n_l) @ lin.Ws[l - 1]).reshape(n, k, n_prev)
                RG *= lin.dphi[l - 2][:, None, :]
                RG += (lin.d2phi[l - 2] * lin.gamma[l - 2])[:, None, :] * rf.RZ[l - 2]
                RD = RG
        return out

    # ---- Gauss–Newton backward: 2 GEMMs per layer (l = 1: 1); no gradient pass needed -------------
    def gn_backward(self, lin: Lin, U: Array, V: Array | None = None) -> Array:
        model = lin.model
        n, k = lin.n, U.shape[1]
        out = np.empty((model.num_params, k), dtype=U.dtype)
        D = U
        for l in range(model.num_layers, 0, -1):
            HW, hb = model.layer_views(out, l)
            n_l, n_prev = HW.shape[0], HW.shape[1]
            HW[...] = (D.reshape(n, k * n_l).T @ lin.A[l - 1]).reshape(k, n_l, n_prev).transpose(1, 2, 0)
            if V is not None and model.l2:
                HW += model.l2 * model.layer_views(V, l)[0]
            if hb is not None:
                hb[...] = D.sum(axis=0).T
            if l > 1:
                D = (D.reshape(n * k, n_l) @ lin.Ws[l - 1]).reshape(n, k, n_prev)
                D *= lin.dphi[l - 2][:, None, :]
        return out

    # ---- entrywise Gauss–Newton (SPEC §3) -------------------------------------------------------------
    def gnh_precompute(self, lin: Lin) -> Factors:
        model = lin.model
        n, d = lin.F.shape
        S = [None] * model.num_layers
        S[-1] = LOSSES[model.loss].hout_factor(lin.aux, lin.F)  # S_L = Cᵀ: (n, d, d)
        for l in range(model.num_layers - 1, 0, -1):
            # S_l = S_{l+1} W_{l+1} D_l: one GEMM with n·d rows
            n_next, n_l = lin.Ws[l].shape
            S_l = (S[l].reshape(n * d, n_next) @ lin.Ws[l]).reshape(n, d, n_l)
            S_l *= lin.dphi[l - 1][:, None, :]
            S[l - 1] = S_l
        nu = [np.sqrt(np.einsum("kdi,kdi->ki", S_l, S_l)) for S_l in S]
        return Factors(model, lin.A, S, nu, lin.scale, n, d)

    @staticmethod
    def _gather(fac: Factors, idx: Array) -> Array:
        """x_{k,p} = a_{l−1,k}[j] S_{l,k}[:, i] for every sample k and index p: (n, d, len(idx))."""
        out = np.empty((fac.n, fac.d, idx.size), dtype=fac.S[0].dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            x = fac.S[l - 1][:, :, row[sel]]
            c = col[sel]
            w = c >= 0
            if w.any():
                x[:, :, w] *= fac.A[l - 1][:, None, c[w]]
            out[:, :, sel] = x
        return out

    @staticmethod
    def _gather_norms(fac: Factors, idx: Array) -> Array:
        """‖x_{k,p}‖ = |a_{l−1,k}[j]| ν_{l,k,i}: (n, len(idx))."""
        out = np.empty((fac.n, idx.size), dtype=fac.S[0].dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            x = fac.nu[l - 1][:, row[sel]]
            c = col[sel]
            w = c >= 0
            x[:, w] *= np.abs(fac.A[l - 1][:, c[w]])
            out[:, sel] = x
        return out

    @staticmethod
    def _l2_diag(fac: Factors, rows: Array, cols: Array) -> Array:
        """λ where rows[t] == cols[t] is a weight coordinate, else 0."""
        if not fac.model.l2:
            return np.zeros(rows.shape, dtype=fac.S[0].dtype)
        return np.where((rows == cols) & (fac.model.decode(rows)[2] >= 0), fac.model.l2, 0).astype(fac.S[0].dtype)

    def _chunk(self, fac: Factors) -> int:
        return max(1, (1 << 22) // (fac.n * fac.d))

    def gnh_entries(self, fac: Factors, rows: Array, cols: Array) -> Array:
        out = np.empty(rows.size, dtype=fac.S[0].dtype)
        step = self._chunk(fac)
        for s in range(0, rows.size, step):
            X = self._gather(fac, rows[s : s + step])
            Y = self._gather(fac, cols[s : s + step])
            out[s : s + step] = np.einsum("kdm,kdm->m", X, Y)
        out *= out.dtype.type(fac.scale)
        return out + self._l2_diag(fac, rows, cols)

    def gnh_block(self, fac: Factors, I: Array, J: Array) -> Array:
        nd = fac.n * fac.d
        XI = self._gather(fac, I).reshape(nd, I.size)
        YJ = self._gather(fac, J).reshape(nd, J.size)
        G = XI.T @ YJ
        G *= G.dtype.type(fac.scale)
        if fac.model.l2:
            G += self._l2_diag(fac, I[:, None], J[None, :])
        return G

    def gnh_columns(self, fac: Factors, J: Array) -> Array:
        model = fac.model
        m = J.size
        U = self._gather(fac, J)  # (n, d, m)
        out = np.empty((model.num_params, m), dtype=U.dtype)
        for l in range(1, model.num_layers + 1):
            GW, gb = model.layer_views(out, l)
            n_l, n_prev = GW.shape[0], GW.shape[1]
            Tl = np.matmul(U.transpose(0, 2, 1), fac.S[l - 1])  # u_kᵀ S_{l,k}: (n, m, n_l)
            GW[...] = (Tl.reshape(fac.n, m * n_l).T @ fac.A[l - 1]).reshape(m, n_l, n_prev).transpose(1, 2, 0)
            if gb is not None:
                gb[...] = Tl.sum(axis=0).T
        out *= out.dtype.type(fac.scale)
        if model.l2:
            out[J, np.arange(m)] += self._l2_diag(fac, J, J)
        return out

    def gnh_diagonal(self, fac: Factors) -> Array:
        model = fac.model
        out = np.empty(model.num_params, dtype=fac.S[0].dtype)
        for l in range(1, model.num_layers + 1):
            GW, gb = model.layer_views(out, l)
            nu2 = fac.nu[l - 1] ** 2
            np.matmul(nu2.T, fac.A[l - 1] ** 2, out=GW)
            if gb is not None:
                gb[...] = nu2.sum(axis=0)
        out *= out.dtype.type(fac.scale)
        if model.l2:
            out += model.l2 * model.weight_mask(out.dtype)
        return out

    def gnh_sample(self, fac: Factors, rows: Array, cols: Array, s: int, seed: int | None) -> Array:
        rng = np.random.default_rng(seed)
        out = np.empty(rows.size, dtype=fac.S[0].dtype)
        step = max(1, (1 << 22) // (fac.n + s * fac.d))
        for c0 in range(0, rows.size, step):
            r, c = rows[c0 : c0 + step], cols[c0 : c0 + step]
            out[c0 : c0 + step] = self._sample_chunk(fac, r, c, s, rng)
        return out + self._l2_diag(fac, rows, cols)

    def _sample_chunk(self, fac: Factors, rows: Array, cols: Array, s: int, rng: np.random.Generator) -> Array:
        n, m = fac.n, rows.size
        w = self._gather_norms(fac, rows) * self._gather_norms(fac, cols)  # π_k ∝ ‖x_k‖‖y_k‖: (n, m)
        total = w.sum(axis=0)
        live = total > 0
        cdf = np.cumsum(w, axis=0) / np.where(live, total, 1)
        cdf[-1] = 1  # guard the last bin against rounding
        # Inverse-CDF draws for all m entries at once: shifting column t by t makes the stacked CDFs one
        # increasing sequence, so a single searchsorted serves every column.
        shift = np.arange(m)
        u = rng.random((s, m))
        pos = np.searchsorted((cdf + shift).T.ravel(), (u + shift).T.ravel(), side="right")
        k = np.minimum(pos.reshape(m, s).T - shift * n, n - 1)  # (s, m) sample indices
        xy = self._sampled_factor(fac, rows, k) * self._sampled_factor(fac, cols, k)
        dots = xy.sum(axis=2)  # x_{k_t}ᵀ y_{k_t}: (s, m)
        prob = np.take_along_axis(w, k, axis=0) / np.where(live, total, 1)
        est = np.where(prob > 0, dots / np.where(prob > 0, prob, 1), 0).mean(axis=0)
        return np.where(live, est * fac.scale, 0).astype(fac.S[0].dtype)

    @staticmethod
    def _sampled_factor(fac: Factors, idx: Array, k: Array) -> Array:
        """x_{k[t, c], idx[c]} for sample indices k (s, m): (s, m, d)."""
        s, m = k.shape
        out = np.empty((s, m, fac.d), dtype=fac.S[0].dtype)
        layer, row, col = fac.model.decode(idx)
        for l in np.unique(layer):
            sel = np.flatnonzero(layer == l)
            ks = k[:, sel]
            x = fac.S[l - 1][ks, :, row[sel]]  # (s, |sel|, d)
            c = col[sel]
            a = np.where(c >= 0, fac.A[l - 1][ks, np.maximum(c, 0)], 1)
            out[:, sel, :] = x * a[:, :, None]
        return out

