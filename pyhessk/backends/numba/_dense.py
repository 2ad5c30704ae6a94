"""The dense H and G of the Numba engine, assembled from per-sample second-order terms.

The algorithm and notation are those of ``backends/numpy/dense.py`` (the reference); the layouts are those
of the C++ engine (``csrc/cpu/dense_cpu.cpp``): per chunk of samples every per-sample matrix is kept
"sample in the middle", (rows, n_c, cols), so that each recursion step is one flat GEMM over the chunk:

- S_l (n_l, n_c, n_l) = ∂²L/∂z_l²: S_l = D_l W_{l+1}ᵀ S_{l+1} W_{l+1} D_l + diag(Γ_l ⊙ φ″_l) (2 GEMMs);
- K_lm (n_l, n_c, n_m) = S_l ∂z_l/∂z_m: K_lm = K_l,m+1 W_{m+1} D_m (1 GEMM);
- dA_jm (n_j, n_c, n_m) = ∂a_j/∂z_m: dA_jm = D_j W_j dA_j−1,m (1 GEMM; H only).

Then block (l, m ≤ l), one unit u of layer l at a time: Y[k, v, w] = K_lm[u, k, w] ã_{l−1}[k, v]
+ Δ_l[k, u] dA_{l−1,m}[v, k, w] and one GEMM Yᵀ ã_{m−1}, added into H at the rows of (u, v) and the
columns of (w, x); diagonal blocks only for units w ≤ u, mirrored at the end with the blocks above the
diagonal. Flat buffers follow ``_passes`` (acts at n·cum[l]; d1, d2, delta at n·(cum[l] − cum[1])).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._blas import gemm
from ._jit import jit
from ._passes import mat, prefix, weights
from .activations import SECOND  # the layer keeps φ″ (⊙ Γ after the backward pass)


@jit
def _row(woff: Any, boff: Any, n_prev: int, l: int, u: int, v: int) -> int:
    """θ index of (unit u, input v) of layer l; v = n_prev is the bias."""
    return woff[l - 1] + u * n_prev + v if v < n_prev else boff[l - 1] + u


@jit
def dense(theta: Any, sizes: Any, woff: Any, boff: Any, modes: Any, acts: Any, d1: Any, d2g: Any, delta: Any,
          SL: Any, hessian: bool, l2: float, chunk: int, H: Any) -> None:
    """H (N, N) ← the dense Hessian (``hessian``) or Gauss–Newton matrix, λ on the weight diagonal included.

    SL (n, d, d) holds s·H_out per sample; d2g holds φ″_l ⊙ Γ_l of the SECOND-mode layers and delta every
    Δ_l (both read only for H); ``chunk`` samples are processed at a time.
    """
    L = sizes.size - 1
    n = SL.shape[0]
    d = sizes[L]
    cum = prefix(sizes)
    bias = 1 if boff[0] >= 0 else 0
    N = H.shape[0]
    dt = H.dtype
    H[:, :] = 0.0
    kmax, ymax, cmax, xmax = 1, 1, 1, 1
    for l in range(1, L + 1):
        if l < L:
            xmax = max(xmax, sizes[l + 1] * sizes[l])
        for m in range(1, l + 1):
            kmax = max(kmax, sizes[l] * sizes[m])
            ymax = max(ymax, (sizes[l - 1] + bias) * sizes[m])
            cmax = max(cmax, (sizes[l - 1] + bias) * sizes[m] * (sizes[m - 1] + bias))
    X = np.empty(max(xmax, d * d) * chunk, dt)
    Ka = np.empty(kmax * chunk, dt)
    Kb = np.empty(kmax * chunk, dt)
    Y = np.empty(ymax * chunk, dt)
    C = np.empty(cmax, dt)
    for s0 in range(0, n, chunk):
        nc = min(chunk, n - s0)
        # ã_{l−1} = [A_{l−1}, 1] for the chunk
        At = []
        for l in range(L):
            a = np.ones((nc, sizes[l] + bias), dt)
            src = mat(acts, n * cum[l], n, sizes[l])
            for k in range(nc):  # (a loop: a slice assignment would compile Numba's shape-error formatting)
                for j in range(sizes[l]):
                    a[k, j] = src[s0 + k, j]
            At.append(a)
        # S_l, l = L..1, stored (n_l, nc, n_l) in flat arrays
        S = [np.empty(0, dt) for _ in range(L + 1)]
        SLc = np.empty(d * nc * d, dt)
        for u in range(d):
            for k in range(nc):
                for w in range(d):
                    SLc[(u * nc + k) * d + w] = SL[s0 + k, u, w]
        S[L] = SLc
        for l in range(L - 1, 0, -1):
            a, b = sizes[l + 1], sizes[l]
            W = weights(theta, sizes, woff, l + 1)  # (a, b)
            Xv = X[:a * nc * b].reshape(a * nc, b)
            gemm(S[l + 1].reshape(a * nc, a), W, Xv)
            Sl = np.empty(b * nc * b, dt)
            gemm(W.T, X[:a * nc * b].reshape(a, nc * b), Sl.reshape(b, nc * b))
            p1 = mat(d1, n * (cum[l] - cum[1]), n, b)
            diag = hessian and modes[l - 1] == SECOND
            p2 = mat(d2g, n * (cum[l] - cum[1]), n, b) if diag else p1
            for u in range(b):
                for k in range(nc):
                    o = (u * nc + k) * b
                    pu = p1[s0 + k, u]
                    for w in range(b):
                        Sl[o + w] *= pu * p1[s0 + k, w]
                    if diag:
                        Sl[o + u] += p2[s0 + k, u]
            S[l] = Sl
        # dA_jm = ∂a_j/∂z_m for m < j ≤ L − 1 at index m·L + j (H only); dA_mm = D_m is applied as a diagonal
        dA = [np.empty(0, dt) for _ in range(L * L)]
        if hessian:
            for m in range(1, L):
                pm = mat(d1, n * (cum[m] - cum[1]), n, sizes[m])
                for j in range(m + 1, L):
                    cur = np.empty(sizes[j] * nc * sizes[m], dt)
                    if j == m + 1:  # D_{m+1} W_{m+1} D_m
                        Wm = weights(theta, sizes, woff, m + 1)
                        for v in range(sizes[j]):
                            for k in range(nc):
                                for w in range(sizes[m]):
                                    cur[(v * nc + k) * sizes[m] + w] = Wm[v, w] * pm[s0 + k, w]
                    else:
                        gemm(weights(theta, sizes, woff, j), dA[m * L + j - 1].reshape(sizes[j - 1], nc * sizes[m]),
                             cur.reshape(sizes[j], nc * sizes[m]))
                    pj = mat(d1, n * (cum[j] - cum[1]), n, sizes[j])
                    for v in range(sizes[j]):
                        for k in range(nc):
                            sv = pj[s0 + k, v]
                            for w in range(sizes[m]):
                                cur[(v * nc + k) * sizes[m] + w] *= sv
                    dA[m * L + j] = cur
        # blocks (l, m ≤ l)
        for l in range(1, L + 1):
            K = S[l]
            use_a = True
            for m in range(l, 0, -1):
                nm, npv = sizes[m], sizes[l - 1]
                if m < l:  # K_lm = K_l,m+1 W_{m+1} D_m
                    Kn = Ka if not use_a else Kb
                    use_a = not use_a
                    Kv = Kn[:sizes[l] * nc * nm]
                    gemm(K[:sizes[l] * nc * sizes[m + 1]].reshape(sizes[l] * nc, sizes[m + 1]),
                         weights(theta, sizes, woff, m + 1), Kv.reshape(sizes[l] * nc, nm))
                    pm = mat(d1, n * (cum[m] - cum[1]), n, nm)
                    for u in range(sizes[l]):
                        for k in range(nc):
                            o = (u * nc + k) * nm
                            for w in range(nm):
                                Kv[o + w] *= pm[s0 + k, w]
                    K = Kv
                na, nb = npv + bias, sizes[m - 1] + bias
                cross = hessian and m < l
                Dl = mat(delta, n * (cum[l] - cum[1]), n, sizes[l])
                B = dA[m * L + l - 1] if cross and m < l - 1 else dA[0]
                pd = mat(d1, n * (cum[m] - cum[1]), n, nm) if cross and m == l - 1 else Dl
                Al = At[l - 1]
                for u in range(sizes[l]):
                    nw = u + 1 if m == l else nm  # diagonal blocks: units w ≤ u, mirrored below
                    Yv = Y[:nc * na * nw].reshape(nc, na * nw)
                    for k in range(nc):
                        ko = (u * nc + k) * nm
                        g = Dl[s0 + k, u] if cross else 0.0
                        for v in range(na):
                            av = Al[k, v]
                            for w in range(nw):
                                Yv[k, v * nw + w] = av * K[ko + w]
                            if cross and v < npv:
                                if m < l - 1:
                                    bo = (v * nc + k) * nm
                                    for w in range(nw):
                                        Yv[k, v * nw + w] += g * B[bo + w]
                                elif v < nw:
                                    Yv[k, v * nw + v] += g * pd[s0 + k, v]
                    Cv = C[:na * nw * nb].reshape(na * nw, nb)
                    gemm(Yv.T, At[m - 1], Cv)
                    for v in range(na):
                        r = _row(woff, boff, npv, l, u, v)
                        for w in range(nw):
                            c0 = woff[m - 1] + w * sizes[m - 1]
                            for x in range(sizes[m - 1]):
                                H[r, c0 + x] += Cv[v * nw + w, x]
                            if bias:
                                H[r, boff[m - 1] + w] += Cv[v * nw + w, sizes[m - 1]]
    # mirror: the diagonal blocks' units w < u, then the blocks (l > m) above the diagonal
    for l in range(1, L + 1):
        npv = sizes[l - 1]
        na = npv + bias
        for u in range(1, sizes[l]):
            for w in range(u):
                for v in range(na):
                    r = _row(woff, boff, npv, l, u, v)
                    for x in range(na):
                        c = _row(woff, boff, npv, l, w, x)
                        H[c, r] = H[r, c]
    for l in range(2, L + 1):
        r0, r1 = woff[l - 1], (woff[l] if l < L else N)
        for m in range(1, l):
            c0, c1 = woff[m - 1], woff[m]
            for r in range(r0, r1):
                for c in range(c0, c1):
                    H[c, r] = H[r, c]
    if l2 != 0.0:
        for l in range(1, L + 1):
            for p in range(woff[l - 1], woff[l - 1] + sizes[l] * sizes[l - 1]):
                H[p, p] += l2
