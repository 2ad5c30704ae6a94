"""The compiled passes of the Numba engine: forward, gradient, R-forward, R-backward, Gauss–Newton backward.

Data layout. Per-layer quantities live in flat buffers, one block per layer, batch-major (one sample per
row), so a whole pass is one compiled call with a handful of arguments whatever the depth:

- ``acts``: A_0 = X, A_1, …, A_{L−1} and F = Z_L; block l at n·cum[l], shape (n, n_l);
- ``d1``, ``d2``, ``gamma`` (hidden layers) and ``delta`` (l = 1..L): block l at n·(cum[l] − cum[1]);
- blocks of k directions: R{Z_l}, R{A_l} (n, k, n_l) at k times those offsets;
- a block V (N, k) is packed per layer: ``Vp`` holds V_l^(j) as (k, n_l, n_{l−1}) at k·woff[l−1] (the
  operand of A_{l−1}[V_l^(1); …]ᵀ), ``Vq`` as (n_l, k, n_{l−1}) (the operand of Δ_l [V_l^(1) | …]); the
  weight part of a result is built in the same two layouts (``P``, ``Q``) and unpacked once.

Here cum[l] = n_0 + … + n_{l−1}. θ layout is SPEC §1: W_l at woff[l−1], b_l at boff[l−1] (−1: no bias).
GEMMs are ``gemm(a, b, out)`` (``_blas``: NumPy's own BLAS; a ``.T`` operand is a BLAS flag, not a copy);
everything elementwise is fused into one loop per layer and pass. GEMM counts per layer (l ≥ 2 / l = 1)
are those of ALGORITHMS.md §10.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import activations, losses
from ._blas import gemm
from ._jit import jit

# ---- views into flat buffers ------------------------------------------------------------------------------
@jit
def prefix(sizes: Any) -> Any:
    """cum[l] = n_0 + … + n_{l−1}, for l = 0..L+1."""
    cum = np.zeros(sizes.size + 1, np.int64)
    for l in range(sizes.size):
        cum[l + 1] = cum[l] + sizes[l]
    return cum


@jit
def mat(buf: Any, start: int, rows: int, cols: int) -> Any:
    return buf[start:start + rows * cols].reshape((rows, cols))


@jit
def mat3(buf: Any, start: int, a: int, b: int, c: int) -> Any:
    return buf[start:start + a * b * c].reshape((a, b, c))


@jit
def weights(theta: Any, sizes: Any, woff: Any, l: int) -> Any:
    """W_l (n_l, n_{l−1}) as a view of θ; l counts from 1."""
    return mat(theta, woff[l - 1], sizes[l], sizes[l - 1])


@jit
def bias(theta: Any, sizes: Any, boff: Any, l: int) -> Any:
    """b_l (n_l,) as a view of θ, or zeros without biases."""
    if boff[l - 1] >= 0:
        return theta[boff[l - 1]:boff[l - 1] + sizes[l]]
    return np.zeros(sizes[l], theta.dtype)


# ---- forward and gradient: 1 GEMM per layer forward, 2 (l = 1: 1) backward --------------------------------
@jit
def add_bias(Z: Any, b: Any) -> None:
    n, m = Z.shape
    for s in range(n):
        for i in range(m):
            Z[s, i] += b[i]


@jit
def forward(theta: Any, X: Any, sizes: Any, woff: Any, boff: Any, act_ids: Any) -> Any:
    """F = f(X; θ) (n, d), keeping only two layers of activations alive."""
    n, L = X.shape[0], sizes.size - 1
    width = np.max(sizes[1:])
    bufs = (np.empty(n * width, X.dtype), np.empty(n * width, X.dtype))
    A = X
    for l in range(1, L + 1):
        Z = mat(bufs[l % 2], 0, n, sizes[l])
        gemm(A, weights(theta, sizes, woff, l).T, Z)
        if l < L:
            activations.sweep_values(act_ids[l - 1], Z, bias(theta, sizes, boff, l))
        else:
            add_bias(Z, bias(theta, sizes, boff, l))
        A = Z
    return A.copy()


@jit
def linearize(theta: Any, sizes: Any, woff: Any, boff: Any, act_ids: Any, modes: Any, loss: int, T: Any,
              acts: Any, d1: Any, d2: Any, delta: Any, aux: Any, scale: float, l2: float) -> float:
    """Forward pass keeping A_l, φ′_l (and φ″_l where ``modes`` asks) and Δ_L = s·∂ℓ/∂f; returns L(θ).

    ``acts`` holds X in its first block on entry.
    """
    n, L = T.shape[0], sizes.size - 1
    cum = prefix(sizes)
    for l in range(1, L + 1):
        Z = mat(acts, n * cum[l], n, sizes[l])
        gemm(mat(acts, n * cum[l - 1], n, sizes[l - 1]), weights(theta, sizes, woff, l).T, Z)
        b = bias(theta, sizes, boff, l)
        if l < L:
            o = n * (cum[l] - cum[1])
            D1 = mat(d1, o, n, sizes[l])
            D2 = mat(d2, o, n, sizes[l]) if modes[l - 1] == activations.SECOND else D1
            activations.sweep_derivatives(act_ids[l - 1], Z, b, D1, D2)
        else:
            add_bias(Z, b)
    E = mat(delta, n * (cum[L] - cum[1]), n, sizes[L])
    value = scale * losses.head(loss, mat(acts, n * cum[L], n, sizes[L]), T, E, aux, scale)
    if l2 != 0.0:
        reg = 0.0
        for l in range(1, L + 1):
            for w in theta[woff[l - 1]:woff[l - 1] + sizes[l] * sizes[l - 1]]:
                reg += float(w) * float(w)
        value += 0.5 * l2 * reg
    return value


@jit
def backward(theta: Any, sizes: Any, woff: Any, boff: Any, modes: Any, acts: Any, d1: Any, d2: Any, delta: Any,
             gamma: Any, grad: Any, l2: float) -> None:
    """Δ_l, Γ_l and ∇L into ``grad``; φ″_l is replaced by φ″_l ⊙ Γ_l, the only form the R-backward pass reads."""
    n, L = acts.size // prefix(sizes)[-1], sizes.size - 1
    cum = prefix(sizes)
    gb = np.zeros(sizes[L], np.float64)  # bias sums over the batch in float64, whatever the dtype
    D = mat(delta, n * (cum[L] - cum[1]), n, sizes[L])
    for s in range(n):
        for i in range(sizes[L]):
            gb[i] += D[s, i]
    for l in range(L, 0, -1):
        W = weights(theta, sizes, woff, l)
        gW = mat(grad, woff[l - 1], sizes[l], sizes[l - 1])
        gemm(D.T, mat(acts, n * cum[l - 1], n, sizes[l - 1]), gW)
        if l2 != 0.0:
            for i in range(sizes[l]):
                for j in range(sizes[l - 1]):
                    gW[i, j] += l2 * W[i, j]
        if boff[l - 1] >= 0:
            for i in range(sizes[l]):
                grad[boff[l - 1] + i] = gb[i]
        if l > 1:
            m, o = sizes[l - 1], n * (cum[l - 1] - cum[1])
            G = mat(gamma, o, n, m)
            gemm(D, W, G)
            D = mat(delta, o, n, m)
            D1 = mat(d1, o, n, m)
            gb = np.zeros(m, np.float64)
            for s in range(n):
                for i in range(m):
                    v = D1[s, i] * G[s, i]
                    D[s, i] = v
                    gb[i] += v
            if modes[l - 2] == activations.SECOND:
                D2 = mat(d2, o, n, m)
                for s in range(n):
                    for i in range(m):
                        D2[s, i] *= G[s, i]


@jit
def fisher_diagonal(sizes: Any, woff: Any, boff: Any, acts: Any, delta: Any, inv_s: Any, l2: Any, out: Any) -> None:
    """out (N,) ← s·Σ_k ∇ℓ_k ⊙ ∇ℓ_k + λ on the weights, from every Δ_l (after ``backward``): per layer one GEMM
    (Δ_l ⊙ Δ_l)ᵀ (A_{l−1} ⊙ A_{l−1}) / s, and the column sums of Δ_l ⊙ Δ_l / s (in float64) for the biases."""
    n, L = acts.size // prefix(sizes)[-1], sizes.size - 1
    cum = prefix(sizes)
    for l in range(1, L + 1):
        n_l, n_p = sizes[l], sizes[l - 1]
        D = mat(delta, n * (cum[l] - cum[1]), n, n_l)
        A = mat(acts, n * cum[l - 1], n, n_p)
        D2 = np.empty((n, n_l), out.dtype)
        A2 = np.empty((n, n_p), out.dtype)
        for s in range(n):
            for i in range(n_l):
                v = D[s, i]
                D2[s, i] = v * (v * inv_s)  # s·(∂ℓ_k/∂z)², from Δ = s·∂ℓ_k/∂z
            for j in range(n_p):
                A2[s, j] = A[s, j] * A[s, j]
        fW = mat(out, woff[l - 1], n_l, n_p)
        gemm(D2.T, A2, fW)
        if l2 != 0.0:
            for i in range(n_l):
                for j in range(n_p):
                    fW[i, j] += l2
        if boff[l - 1] >= 0:
            acc = np.zeros(n_l, np.float64)
            for s in range(n):
                for i in range(n_l):
                    acc[i] += D2[s, i]
            for i in range(n_l):
                out[boff[l - 1] + i] = acc[i]


# ---- workspaces: every product carves its scratch buffers from one flat array ---------------------------------
HVP, GNVP, JVP, VJP = 0, 1, 2, 3


@jit
def space(kind: int, sizes: Any, n: int, k: int) -> int:
    """Length of the flat workspace of a product on k directions (``kind``: HVP, GNVP, JVP, VJP)."""
    L = sizes.size - 1
    cum = prefix(sizes)
    N = 0
    for l in range(1, L + 1):
        N += sizes[l] * (sizes[l - 1] + 1)  # an upper bound without biases too
    width = np.max(sizes[1:])
    nkw, nkd = n * k * width, n * k * sizes[L]
    if kind == HVP:  # Vp, Vq, P, Q; rz, ra (every layer); R{Δ} ping-pong; s·H_out R{f}
        return 4 * N * k + n * k * (cum[L + 1] - cum[1]) + n * k * (cum[L] - cum[1]) + 2 * nkw + nkd
    if kind == GNVP:  # Vp, P; rz, ra ping-pong; U; D ping-pong
        return 2 * N * k + 3 * nkw + nkd + 2 * nkw
    if kind == JVP:  # Vp; rz, ra ping-pong
        return N * k + 3 * nkw
    return N * k + 2 * nkw  # VJP: P; D ping-pong


@jit
def take(ws: Any, pos: Any, size: int) -> Any:
    """The next ``size`` elements of the workspace (pos[0] is the running offset)."""
    start = pos[0]
    pos[0] = start + size
    if pos[0] > ws.size:
        raise ValueError("workspace too small")
    return ws[start:start + size]


# ---- blocks of directions: packing and unpacking ------------------------------------------------------------
@jit
def pack(sizes: Any, woff: Any, boff: Any, V: Any, Vp: Any, Vq: Any) -> None:
    """V (N, k) → Vp direction-major and Vq unit-major, each unless it is empty, per layer: V_l^(j)[i, c] at
    Vp[k·w0 + (j·n_l + i)·n_p + c] and Vq[k·w0 + (i·k + j)·n_p + c]; b_l^(j)[i] at Vp[k·b0 + j·n_l + i] and
    Vq[k·b0 + i·k + j]. Every inner sweep writes contiguous memory; for one vector both layouts are V's."""
    k = V.shape[1]
    if k == 1:
        for buf in (Vp, Vq):
            if buf.size > 0:
                for r in range(buf.size):  # a loop: slice assignment compiles Numba's shape-error formatting
                    buf[r] = V[r, 0]
        return
    for l in range(1, sizes.size):
        n_l, n_p, w0, b0 = sizes[l], sizes[l - 1], woff[l - 1], boff[l - 1]
        for i in range(n_l):
            src = w0 + i * n_p
            for j in range(k):
                if Vp.size > 0:
                    dst = Vp[k * w0 + (j * n_l + i) * n_p:]
                    for c in range(n_p):
                        dst[c] = V[src + c, j]
                if Vq.size > 0:
                    dst = Vq[k * w0 + (i * k + j) * n_p:]
                    for c in range(n_p):
                        dst[c] = V[src + c, j]
                if b0 >= 0 and Vp.size > 0:
                    Vp[k * b0 + j * n_l + i] = V[b0 + i, j]
                if b0 >= 0 and Vq.size > 0:
                    Vq[k * b0 + i * k + j] = V[b0 + i, j]


@jit
def add_weight_decay(sizes: Any, woff: Any, l2: float, V: Any, out: Any) -> None:
    """out[r, :] += l2·V[r, :] for every weight row r (the biases carry no decay), for V and out (N, k)."""
    for l in range(1, sizes.size):
        for r in range(woff[l - 1], woff[l - 1] + sizes[l] * sizes[l - 1]):
            for j in range(V.shape[1]):
                out[r, j] += l2 * V[r, j]


@jit
def unpack(sizes: Any, woff: Any, boff: Any, k: int, P: Any, Q: Any, V: Any, l2: float, unit_major: bool) -> Any:
    """The result (N, k) from P (direction-major, or unit-major when ``unit_major``) plus Q (unit-major, layers
    2..L), where Q is not empty, plus l2·P_W·V; the layouts are those of ``pack``. Every inner sweep reads
    contiguous memory."""
    N = woff[-1] + sizes[-1] * sizes[-2] + (sizes[-1] if boff[-1] >= 0 else 0)
    out = np.empty((N, k), P.dtype)
    use_v = l2 != 0.0 and V.size > 0
    if k == 1 and Q.size == 0:  # one vector: P is already in V's layout
        for r in range(N):
            out[r, 0] = P[r]
        if use_v:
            add_weight_decay(sizes, woff, l2, V, out)
        return out
    for l in range(1, sizes.size):
        n_l, n_p, w0, b0 = sizes[l], sizes[l - 1], woff[l - 1], boff[l - 1]
        for i in range(n_l):
            dst = w0 + i * n_p
            for j in range(k):
                unit = k * w0 + (i * k + j) * n_p
                src = P[unit if unit_major else k * w0 + (j * n_l + i) * n_p:]
                for c in range(n_p):
                    out[dst + c, j] = src[c]
                if Q.size > 0 and l > 1:
                    src = Q[unit:]
                    for c in range(n_p):
                        out[dst + c, j] += src[c]
                if use_v:
                    for c in range(n_p):
                        out[dst + c, j] += l2 * V[dst + c, j]
                if b0 >= 0:
                    out[b0 + i, j] = P[k * b0 + (i * k + j if unit_major else j * n_l + i)]
    return out


@jit
def bias_sums(R: Any, P: Any, start: int) -> None:
    """P[start + j·m + i] = Σ_s R[s, j, i] for R (n, k, m): the bias part of a weight-gradient-like block."""
    n, k, m = R.shape
    acc = np.zeros((k, m), np.float64)
    for s in range(n):
        for j in range(k):
            for i in range(m):
                acc[j, i] += R[s, j, i]
    for j in range(k):
        for i in range(m):
            P[start + j * m + i] = acc[j, i]


# ---- R-forward: 2 GEMMs per layer (l = 1: 1) ---------------------------------------------------------------
@jit
def r_forward(theta: Any, sizes: Any, woff: Any, boff: Any, acts: Any, d1: Any, Vp: Any, k: int, keep: bool,
              rz: Any, ra: Any) -> None:
    """R{Z_l} into ``rz`` and R{A_l} into ``ra`` for the packed block Vp.

    ``keep``: every layer's R{Z_l}, R{A_l} stay (the Hessian product needs them; rz n·k·(cum[L+1] − cum[1]),
    ra n·k·(cum[L] − cum[1])); otherwise two layers at a time (Gauss–Newton and Jacobian products; rz
    n·k·width, ra 2·n·k·width), and R{f} = R{Z_L} is the first block of ``rz``.
    """
    L = sizes.size - 1
    cum = prefix(sizes)
    n = acts.size // cum[-1]
    width = np.max(sizes[1:])
    for l in range(1, L + 1):
        n_l, n_p = sizes[l], sizes[l - 1]
        zo = n * k * (cum[l] - cum[1]) if keep else 0
        RZ = mat(rz, zo, n, k * n_l)
        # A_{l−1} [V_l^(1); …; V_l^(k)]ᵀ: (n, n_{l−1}) @ (n_{l−1}, k·n_l)
        gemm(mat(acts, n * cum[l - 1], n, n_p), mat(Vp, k * woff[l - 1], k * n_l, n_p).T, RZ)
        if l > 1:  # + W_l R{A_{l−1}}: (n·k, n_{l−1}) @ (n_{l−1}, n_l), accumulated into the same memory
            ao = n * k * (cum[l - 1] - cum[1]) if keep else n * k * width * ((l - 1) % 2)
            gemm(mat(ra, ao, n * k, n_p), weights(theta, sizes, woff, l).T, mat(rz, zo, n * k, n_l), 1.0)
        has_b = boff[l - 1] >= 0
        vb = mat(Vp, k * boff[l - 1] if has_b else 0, k, n_l)
        if l == L:
            if has_b:
                for s in range(n):
                    for j in range(k):
                        for i in range(n_l):
                            RZ[s, j * n_l + i] += vb[j, i]
            continue
        RA = mat(ra, n * k * (cum[l] - cum[1]) if keep else n * k * width * (l % 2), n, k * n_l)
        D1 = mat(d1, n * (cum[l] - cum[1]), n, n_l)
        for s in range(n):
            for j in range(k):
                o = j * n_l
                if has_b:
                    for i in range(n_l):
                        z = RZ[s, o + i] + vb[j, i]
                        RZ[s, o + i] = z
                        RA[s, o + i] = D1[s, i] * z  # R{A_l} = φ′_l ⊙ R{Z_l}
                else:
                    for i in range(n_l):
                        RA[s, o + i] = D1[s, i] * RZ[s, o + i]


@jit
def output_hessian(loss: int, aux: Any, R: Any, scale: float) -> Any:
    """s·H_out·R for R (n, k, d)."""
    U = np.empty_like(R)
    losses.hout(loss, aux, R, U, scale)
    return U


# ---- R-backward: 4 GEMMs per layer (l = 1: 1); with the R-forward, 6 (l = 1: 2) ----------------------------
@jit
def r_backward(theta: Any, sizes: Any, woff: Any, boff: Any, modes: Any, acts: Any, d1: Any, d2g: Any,
               delta: Any, rz: Any, ra: Any, Vq: Any, RD: Any, P: Any, Q: Any, bufs: Any) -> None:
    """The packed Hessian block into (P, Q) (N·k each) from R{Δ_L} = s·H_out·R{f} (n, k, d) and the kept
    R-forward state; ``bufs`` (2·n·k·width) holds R{Δ_l}."""
    L = sizes.size - 1
    cum = prefix(sizes)
    n, k = RD.shape[0], RD.shape[1]
    half = bufs.size // 2
    R = mat(RD.ravel(), 0, n, k * sizes[L])
    for l in range(L, 0, -1):
        n_l, n_p = sizes[l], sizes[l - 1]
        # R{Δ_l}ᵀ A_{l−1} for all directions: (k·n_l, n) @ (n, n_{l−1})
        gemm(R.T, mat(acts, n * cum[l - 1], n, n_p), mat(P, k * woff[l - 1], k * n_l, n_p))
        if boff[l - 1] >= 0:
            bias_sums(R.reshape((n, k, n_l)), P, k * boff[l - 1])
        if l == 1:
            break
        o = n * (cum[l - 1] - cum[1])
        Dl = mat(delta, n * (cum[l] - cum[1]), n, n_l)
        # Δ_lᵀ R{A_{l−1}}: (n_l, n) @ (n, k·n_{l−1})
        gemm(Dl.T, mat(ra, k * o, n, k * n_p), mat(Q, k * woff[l - 1], n_l, k * n_p))
        # R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l (the second GEMM accumulates into the first's memory),
        # then R{Δ_{l−1}} = φ′ R{Γ} + (φ″ ⊙ Γ) R{Z}
        b0 = half * (l % 2)
        Rn = mat(bufs, b0, n, k * n_p)
        gemm(Dl, mat(Vq, k * woff[l - 1], n_l, k * n_p), Rn)
        gemm(R.reshape((n * k, n_l)), weights(theta, sizes, woff, l), mat(bufs, b0, n * k, n_p), 1.0)
        D1 = mat(d1, o, n, n_p)
        second = modes[l - 2] == activations.SECOND
        D2 = mat(d2g, o, n, n_p) if second else D1
        RZp = mat(rz, k * o, n, k * n_p)
        for s in range(n):
            for j in range(k):
                c0 = j * n_p
                if second:
                    for c in range(n_p):
                        Rn[s, c0 + c] = D1[s, c] * Rn[s, c0 + c] + D2[s, c] * RZp[s, c0 + c]
                else:
                    for c in range(n_p):
                        Rn[s, c0 + c] = D1[s, c] * Rn[s, c0 + c]
        R = Rn


# ---- Gauss–Newton backward: 2 GEMMs per layer (l = 1: 1); no gradient pass needed --------------------------
@jit
def gn_backward(theta: Any, sizes: Any, woff: Any, boff: Any, acts: Any, d1: Any, U: Any, P: Any,
                bufs: Any) -> None:
    """The packed Jᵀ U (summed over samples) into P (N·k) for U (n, k, d); ``bufs``: 2·n·k·width."""
    L = sizes.size - 1
    cum = prefix(sizes)
    n, k = U.shape[0], U.shape[1]
    half = bufs.size // 2
    D = mat(U.ravel(), 0, n, k * sizes[L])
    for l in range(L, 0, -1):
        n_l, n_p = sizes[l], sizes[l - 1]
        gemm(D.T, mat(acts, n * cum[l - 1], n, n_p), mat(P, k * woff[l - 1], k * n_l, n_p))
        if boff[l - 1] >= 0:
            bias_sums(D.reshape((n, k, n_l)), P, k * boff[l - 1])
        if l == 1:
            break
        Dn = mat(bufs, half * (l % 2), n * k, n_p)
        gemm(D.reshape((n * k, n_l)), weights(theta, sizes, woff, l), Dn)
        D1 = mat(d1, n * (cum[l - 1] - cum[1]), n, n_p)
        for s in range(n):
            for j in range(k):
                t = s * k + j
                for c in range(n_p):
                    Dn[t, c] *= D1[s, c]
        D = Dn.reshape((n, k * n_p))


# ---- the four products, each one compiled call over a workspace ----------------------------------------------
@jit
def hvp(theta: Any, sizes: Any, woff: Any, boff: Any, modes: Any, loss: int, acts: Any, d1: Any, d2g: Any,
        delta: Any, aux: Any, scale: float, l2: float, V: Any, ws: Any) -> Any:
    """H V (N, k): pack, R-forward, s·H_out, R-backward, unpack; scratch from ``ws`` (``space(HVP, …)``)."""
    N, k = V.shape
    L = sizes.size - 1
    n, d = aux.shape
    cum = prefix(sizes)
    width = np.max(sizes[1:])
    pos = np.zeros(1, np.int64)
    Vp, Vq, P, Q = take(ws, pos, N * k), take(ws, pos, N * k), take(ws, pos, N * k), take(ws, pos, N * k)
    rz = take(ws, pos, n * k * (cum[L + 1] - cum[1]))
    ra = take(ws, pos, n * k * (cum[L] - cum[1]))
    bufs = take(ws, pos, 2 * n * k * width)
    RD = take(ws, pos, n * k * d).reshape((n, k, d))
    pack(sizes, woff, boff, V, Vp, Vq)
    r_forward(theta, sizes, woff, boff, acts, d1, Vp, k, True, rz, ra)
    losses.hout(loss, aux, mat3(rz, n * k * (cum[L] - cum[1]), n, k, d), RD, scale)
    r_backward(theta, sizes, woff, boff, modes, acts, d1, d2g, delta, rz, ra, Vq, RD, P, Q, bufs)
    return unpack(sizes, woff, boff, k, P, Q, V, l2, False)


@jit
def gnvp(theta: Any, sizes: Any, woff: Any, boff: Any, loss: int, acts: Any, d1: Any, aux: Any, scale: float,
         l2: float, V: Any, ws: Any) -> Any:
    """G V (N, k): pack, R-forward (two layers alive at a time), s·H_out, Gauss–Newton backward, unpack."""
    N, k = V.shape
    n, d = aux.shape
    width = np.max(sizes[1:])
    pos = np.zeros(1, np.int64)
    Vp, P = take(ws, pos, N * k), take(ws, pos, N * k)
    rz, ra = take(ws, pos, n * k * width), take(ws, pos, 2 * n * k * width)
    U = take(ws, pos, n * k * d).reshape((n, k, d))
    bufs = take(ws, pos, 2 * n * k * width)
    pack(sizes, woff, boff, V, Vp, Vp[:0])
    r_forward(theta, sizes, woff, boff, acts, d1, Vp, k, False, rz, ra)
    losses.hout(loss, aux, mat3(rz, 0, n, k, d), U, scale)
    gn_backward(theta, sizes, woff, boff, acts, d1, U, P, bufs)
    return unpack(sizes, woff, boff, k, P, P[:0], V, l2, False)


@jit
def jvp(theta: Any, sizes: Any, woff: Any, boff: Any, acts: Any, d1: Any, V: Any, ws: Any) -> Any:
    """J V (n, k, d)."""
    N, k = V.shape
    n, d = acts.size // prefix(sizes)[-1], sizes[-1]
    width = np.max(sizes[1:])
    pos = np.zeros(1, np.int64)
    Vp = take(ws, pos, N * k)
    rz, ra = take(ws, pos, n * k * width), take(ws, pos, 2 * n * k * width)
    pack(sizes, woff, boff, V, Vp, Vp[:0])
    r_forward(theta, sizes, woff, boff, acts, d1, Vp, k, False, rz, ra)
    return mat3(rz, 0, n, k, d).copy()


@jit
def vjp(theta: Any, sizes: Any, woff: Any, boff: Any, acts: Any, d1: Any, U: Any, ws: Any) -> Any:
    """Jᵀ U (N, k) for U (n, k, d), summed over samples."""
    n, k = U.shape[0], U.shape[1]
    width = np.max(sizes[1:])
    N = woff[-1] + sizes[-1] * sizes[-2] + (sizes[-1] if boff[-1] >= 0 else 0)
    pos = np.zeros(1, np.int64)
    P, bufs = take(ws, pos, N * k), take(ws, pos, 2 * n * k * width)
    gn_backward(theta, sizes, woff, boff, acts, d1, U, P, bufs)
    return unpack(sizes, woff, boff, k, P, P[:0], np.empty((0, 0), P.dtype), 0.0, False)
