"""Compiled entrywise Gauss–Newton Hessian (SPEC §3): the precomputation, exact reads, the sampler, and the
product G V from the stored factors.

Factors are stored unit-major in flat buffers, so that the factor of one parameter is contiguous:

- ``S``: S_l as (n_l, d, n) at n·d·(cum[l] − cum[1]), S[l][i, e, k] = S_{l,k}[e, i] (the sample index
  runs fastest, so the sweeps over samples of the products are contiguous);
- ``nu``: ν_l as (n_l, n) at n·(cum[l] − cum[1]);
- ``AT``: A_lᵀ as (n_l, n) at n·cum[l], l = 0..L−1 (a_{l,k}[j] for all k is one row).

A parameter p decodes to (layer l, unit row i, input column j; j = −1 for a bias) and has the factor
x_{p,k} = a_{l−1,k}[j] S_{l,k}[:, i] (a = 1 for a bias); G[p, q] = s Σ_k ⟨x_{p,k}, x_{q,k}⟩ (+ λ on the
weight diagonal). Every gather is a compiled loop; dot products accumulate in float64; GEMMs go through
``_blas.gemm`` (NumPy's BLAS).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import losses
from ._blas import gemm
from ._jit import jit
from ._passes import add_weight_decay, mat, mat3, pack, prefix, take, unpack, weights


@jit
def transpose(A: Any, T: Any) -> None:
    """T = Aᵀ for A (r, c), T (c, r), in 32 × 32 tiles (both sides stay in cache)."""
    r, c = A.shape
    for i0 in range(0, r, 32):
        for j0 in range(0, c, 32):
            for j in range(j0, min(j0 + 32, c)):
                for i in range(i0, min(i0 + 32, r)):
                    T[j, i] = A[i, j]


@jit
def _scale_rows(Sl: Any, G: Any, NU: Any) -> None:
    """S_l[i, :, k] *= G[i, k] and ν_l[i, k] = ‖S_l[i, :, k]‖ for S_l (n_l, d, n); squares summed in float64."""
    n_l, d, n = Sl.shape
    if d == 1:
        for i in range(n_l):
            for k in range(n):
                v = Sl[i, 0, k] * G[i, k]
                Sl[i, 0, k] = v
                NU[i, k] = abs(v)
        return
    acc = np.empty(n, np.float64)
    for i in range(n_l):
        acc[:] = 0.0
        for e in range(d):
            for k in range(n):
                v = Sl[i, e, k] * G[i, k]
                Sl[i, e, k] = v
                acc[k] += np.float64(v) * np.float64(v)
        for k in range(n):
            NU[i, k] = np.sqrt(acc[k])


@jit
def precompute(theta: Any, sizes: Any, woff: Any, loss: int, acts: Any, d1: Any, aux: Any) -> tuple[Any, Any, Any, Any]:
    """(S, nu, AT, DT): S_L = Cᵀ from the loss head; S_l = (W_{l+1}ᵀ S_{l+1}) ⊙ φ′_l, one GEMM per layer l < L;
    DT holds φ′_lᵀ (n_l, n) of the hidden layers at n·(cum[l] − cum[1]), for the carried layers of ``gnvp``."""
    L = sizes.size - 1
    cum = prefix(sizes)
    n, d = aux.shape
    S = np.empty(n * d * (cum[L + 1] - cum[1]), acts.dtype)
    nu = np.empty(n * (cum[L + 1] - cum[1]), acts.dtype)
    AT = np.empty(n * cum[L], acts.dtype)
    G = np.empty(n * np.max(sizes), acts.dtype)
    DT = np.empty(n * (cum[L] - cum[1]), acts.dtype)
    losses.factor(loss, aux, mat3(S, n * d * (cum[L] - cum[1]), d, d, n))
    for l in range(L, 0, -1):
        n_l = sizes[l]
        Sl = mat3(S, n * d * (cum[l] - cum[1]), n_l, d, n)
        Gl = mat(DT, n * (cum[l] - cum[1]), n_l, n) if l < L else mat(G, 0, n_l, n)
        if l < L:  # W_{l+1}ᵀ S_{l+1}: (n_l, n_{l+1}) @ (n_{l+1}, n·d), then the rows times φ′_l
            gemm(weights(theta, sizes, woff, l + 1).T,
                   mat(S, n * d * (cum[l + 1] - cum[1]), sizes[l + 1], n * d), Sl.reshape((n_l, n * d)))
            transpose(mat(d1, n * (cum[l] - cum[1]), n, n_l), Gl)
        else:
            for i in range(n_l):
                for k in range(n):
                    Gl[i, k] = 1.0
        _scale_rows(Sl, Gl, mat(nu, n * (cum[l] - cum[1]), n_l, n))
    for l in range(L):
        transpose(mat(acts, n * cum[l], n, sizes[l]), mat(AT, n * cum[l], sizes[l], n))
    return S, nu, AT, DT


@jit
def locate(p: int, sizes: Any, woff: Any) -> tuple[int, int, int]:
    """Flat parameter index → (layer l ≥ 1, unit row i, input column j; j = −1 for a bias)."""
    l = sizes.size - 1
    while woff[l - 1] > p:
        l -= 1
    local, n_p = p - woff[l - 1], sizes[l - 1]
    n_w = sizes[l] * n_p
    if local < n_w:
        return l, local // n_p, local % n_p
    return l, local - n_w, -1


@jit(inline=True)
def _param(AT: Any, ones: Any, sizes: Any, woff: Any, cum: Any, p: int, n: int) -> tuple[int, int, Any, bool]:
    """(layer l, unit i, a_{l−1}[j] as (n,) — ones for a bias —, is_weight) of parameter p; cum = prefix(sizes),
    made once by the caller."""
    l, i, j = locate(p, sizes, woff)
    a = AT[n * cum[l - 1] + j * n:n * cum[l - 1] + (j + 1) * n] if j >= 0 else ones
    return l, i, a, j >= 0


@jit
def _factor(S: Any, AT: Any, ones: Any, sizes: Any, woff: Any, cum: Any, p: int, n: int,
            d: int) -> tuple[Any, Any, bool]:
    """(S_l[i] as (d·n,), element (e, k) at e·n + k; a_{l−1}[j] as (n,) — ones for a bias —; is_weight)
    of parameter p."""
    l, i, a, is_weight = _param(AT, ones, sizes, woff, cum, p, n)
    s0 = n * d * (cum[l] - cum[1]) + i * n * d
    return S[s0:s0 + n * d], a, is_weight


@jit
def _nu(nu: Any, AT: Any, ones: Any, sizes: Any, woff: Any, cum: Any, p: int, n: int) -> tuple[Any, Any]:
    """(ν_l[i] (n,), a_{l−1}[j] (n,) — ones for a bias) of parameter p."""
    l, i, a, _ = _param(AT, ones, sizes, woff, cum, p, n)
    o = n * (cum[l] - cum[1]) + i * n
    return nu[o:o + n], a


@jit(inline=True)
def _weighted_dot(w: Any, x: Any, y: Any, o: int, n: int, part: Any) -> float:
    """Σ_k w[k] x[o + k] y[o + k] in double, in a fixed order: the whole groups of 32 terms go to 32 partial
    sums (part, a caller's scratch of 32), which are then added pairwise; the last n mod 32 terms go to
    their own sum. The group update is an elementwise loop over part, which LLVM vectorizes without
    reassociating anything (interleaved scalar partials stayed scalar: 2.3× slower); unsigned indices drop
    the negative-index checks."""
    part[:] = 0.0
    nu = np.uint64(n)
    whole = nu - nu % np.uint64(32)
    xs, ys = x[o:o + n], y[o:o + n]
    b = np.uint64(0)
    while b < whole:
        for t in range(32):
            k = b + np.uint64(t)
            part[t] += w[k] * np.float64(xs[k]) * np.float64(ys[k])
        b += np.uint64(32)
    tail = 0.0
    for k in range(whole, nu):
        tail += w[k] * np.float64(xs[k]) * np.float64(ys[k])
    for h in (16, 8, 4, 2, 1):
        for t in range(h):
            part[t] += part[t + h]
    return part[0] + tail


@jit
def entries(S: Any, AT: Any, sizes: Any, woff: Any, rows: Any, cols: Any, n: int, d: int, scale: float,
            l2: float) -> Any:
    """G[rows[t], cols[t]]: O(n·d) each, Σ_c Σ_k (a_p a_q)[k] S_p[c, k] S_q[c, k]."""
    out = np.empty(rows.size, S.dtype)
    ones = np.ones(n, S.dtype)
    cum = prefix(sizes)
    w = np.empty(n, np.float64)
    part = np.empty(32, np.float64)
    for t in range(rows.size):
        sp, ap, wp = _factor(S, AT, ones, sizes, woff, cum, rows[t], n, d)
        sq, aq, _ = _factor(S, AT, ones, sizes, woff, cum, cols[t], n, d)
        for k in range(n):
            w[k] = np.float64(ap[k]) * np.float64(aq[k])
        acc = 0.0
        for e in range(d):
            acc += _weighted_dot(w, sp, sq, e * n, n, part)
        out[t] = scale * acc + (l2 if wp and rows[t] == cols[t] else 0.0)
    return out


@jit
def gather(S: Any, AT: Any, sizes: Any, woff: Any, idx: Any, n: int, d: int) -> Any:
    """x_{p,k} for p in idx: (len(idx), d·n), element (e, k) of row t at e·n + k."""
    out = np.empty((idx.size, n * d), S.dtype)
    ones = np.ones(n, S.dtype)
    cum = prefix(sizes)
    for t in range(idx.size):
        sp, ap, _ = _factor(S, AT, ones, sizes, woff, cum, idx[t], n, d)
        for e in range(d):
            o = e * n
            for k in range(n):
                out[t, o + k] = ap[k] * sp[o + k]
    return out


@jit
def _add_l2(G: Any, sizes: Any, woff: Any, I: Any, J: Any, l2: float) -> None:
    for r in range(I.size):
        if locate(I[r], sizes, woff)[2] >= 0:
            for c in range(J.size):
                if J[c] == I[r]:
                    G[r, c] += l2


@jit
def block(S: Any, AT: Any, sizes: Any, woff: Any, I: Any, J: Any, n: int, d: int, scale: float, l2: float) -> Any:
    """G[I × J]: gather both factor sets, then one GEMM (|I|, n·d) @ (n·d, |J|)."""
    XI = gather(S, AT, sizes, woff, I, n, d)
    YJ = gather(S, AT, sizes, woff, J, n, d)
    G = np.empty((I.size, J.size), S.dtype)
    gemm(XI, YJ.T, G)
    for r in range(I.size):
        for c in range(J.size):
            G[r, c] *= scale
    if l2 != 0.0:
        _add_l2(G, sizes, woff, I, J, l2)
    return G


@jit
def columns(S: Any, AT: Any, sizes: Any, woff: Any, boff: Any, J: Any, n: int, d: int, scale: float,
            l2: float) -> Any:
    """G[:, J] (N, m): per layer, T[t, i, k] = ⟨S_{l,k}[:, i], x_{J[t],k}⟩, then one GEMM T A_{l−1}."""
    L = sizes.size - 1
    cum = prefix(sizes)
    m = J.size
    N = woff[L - 1] + sizes[L] * sizes[L - 1] + (sizes[L] if boff[L - 1] >= 0 else 0)
    U = gather(S, AT, sizes, woff, J, n, d)
    out = np.empty((N, m), S.dtype)
    for l in range(1, L + 1):
        n_l, n_p = sizes[l], sizes[l - 1]
        Sl = mat3(S, n * d * (cum[l] - cum[1]), n_l, d, n)
        TT = np.zeros((m * n_l, n), S.dtype)  # TT[t·n_l + i, k] = ⟨S_{l,k}[:, i], x_{J[t],k}⟩
        for t in range(m):
            for i in range(n_l):
                row = t * n_l + i
                for e in range(d):
                    o = e * n
                    for k in range(n):
                        TT[row, k] += Sl[i, e, k] * U[t, o + k]
        GW = np.empty((m * n_l, n_p), S.dtype)  # (m, n_l, n_{l−1})
        gemm(TT, mat(AT, n * cum[l - 1], n_p, n).T, GW)
        w0 = woff[l - 1]
        for t in range(m):
            for i in range(n_l):
                for c in range(n_p):
                    out[w0 + i * n_p + c, t] = scale * GW[t * n_l + i, c]
        b0 = boff[l - 1]
        if b0 >= 0:  # the bias rows: row sums of TT
            for t in range(m):
                for i in range(n_l):
                    out[b0 + i, t] = scale * _row_sum(TT, t * n_l + i)
    if l2 != 0.0:
        for t in range(m):
            if locate(J[t], sizes, woff)[2] >= 0:
                out[J[t], t] += l2
    return out


@jit
def _row_sum(X: Any, r: int) -> float:
    """Σ_c X[r, c] in float64, in eight interleaved partial sums (a fixed order): one running sum is one
    dependent add per number, slower than the pass that wrote the row."""
    x = X[r]
    m = x.size
    part = np.zeros(8, np.float64)
    c = 0
    while c + 8 <= m:
        for t in range(8):
            part[t] += np.float64(x[c + t])
        c += 8
    for t in range(m - c):
        part[t] += np.float64(x[c + t])
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]))


@jit
def _squares(X: Any) -> Any:
    out = np.empty_like(X)
    for r in range(X.shape[0]):
        for c in range(X.shape[1]):
            out[r, c] = X[r, c] * X[r, c]
    return out


@jit
def diagonal(nu: Any, AT: Any, sizes: Any, woff: Any, boff: Any, n: int, scale: float, l2: float) -> Any:
    """diag(G) from the norms: per layer one GEMM (ν_l²) (A_{l−1}²)ᵀ, O(n) per entry."""
    L = sizes.size - 1
    cum = prefix(sizes)
    N = woff[L - 1] + sizes[L] * sizes[L - 1] + (sizes[L] if boff[L - 1] >= 0 else 0)
    out = np.empty(N, nu.dtype)
    for l in range(1, L + 1):
        n_l, n_p = sizes[l], sizes[l - 1]
        nu2 = _squares(mat(nu, n * (cum[l] - cum[1]), n_l, n))
        a2 = _squares(mat(AT, n * cum[l - 1], n_p, n))
        GW = mat(out, woff[l - 1], n_l, n_p)
        gemm(nu2, a2.T, GW)
        for i in range(n_l):
            for c in range(n_p):
                GW[i, c] = scale * GW[i, c] + l2
        b0 = boff[l - 1]
        if b0 >= 0:  # the bias entries: row sums of ν_l²
            for i in range(n_l):
                out[b0 + i] = scale * _row_sum(nu2, i)
    return out


# ---- the sampler: per entry the running sums of its weights, searched through a tree of fanout 16 ------------
@jit
def tree_levels(n: int) -> Any:
    """Offsets of the levels of the search tree over n running sums (``sample``), from the sums up, and its
    length last. Level 0 holds the sums C[0..n) after a 0 (C[−1] = 0); each level above holds the last sum of
    every 16 entries of the one below, up to a top of at most 16; every level is padded with +∞ to a multiple
    of 16, so that locating a draw is one 16-wide compare-and-count per level (2 levels for n ≤ 256, 3 for
    n ≤ 4,096) instead of the 8 or 12 dependent steps of a binary search."""
    levels, size = 1, n
    while size > 16:
        size = (size + 15) // 16
        levels += 1
    off = np.empty(levels + 1, np.int64)
    end, size = 1, n
    for j in range(levels):
        off[j] = end
        end += (size + 15) // 16 * 16
        size = (size + 15) // 16
    off[levels] = end
    return off


@jit
def _running_sums(ap: Any, nup: Any, aq: Any, nuq: Any, C: Any, n: int) -> float:
    """The weights |a_p ν_p|·|a_q ν_q| over the samples and their running sums into C[0..n); returns the total.
    Four independent chains over the quarters of the batch (one chain would wait on every addition), shifted
    by the quarters before them afterwards: every shifted sum is at least the one before it, so the sums stay
    nondecreasing."""
    for k in range(n):
        C[k] = abs(np.float64(ap[k]) * np.float64(nup[k])) * abs(np.float64(aq[k]) * np.float64(nuq[k]))
    q = n // 4
    s0 = s1 = s2 = s3 = 0.0
    for k in range(q):
        s0 += C[k]
        C[k] = s0
        s1 += C[q + k]
        C[q + k] = s1
        s2 += C[2 * q + k]
        C[2 * q + k] = s2
        s3 += C[3 * q + k]
        C[3 * q + k] = s3
    for k in range(4 * q, n):  # the remainder goes on the last chain
        s3 += C[k]
        C[k] = s3
    o1 = s0
    o2 = o1 + s1
    o3 = o2 + s2
    for k in range(q):
        C[q + k] += o1
        C[2 * q + k] += o2
    for k in range(3 * q, n):
        C[k] += o3
    return C[n - 1]


@jit
def _build_tree(tree: Any, off: Any, n: int) -> None:
    """The levels of the tree above its sums (pads, +∞, are set once when the tree is made)."""
    size = n
    for j in range(1, off.size - 1):
        size = (size + 15) // 16
        for i in range(size):
            tree[off[j] + i] = tree[off[j - 1] + 16 * i + 15]  # a partial group's last is a pad: +∞


@intrinsic
def _prefetch(typingctx: Any, arr: Any, index: Any) -> Any:
    """A hint to bring the cache line of arr[index] in (llvm.prefetch: a read, to be kept close); it changes
    no result. For loads whose addresses are known well before they are used, so that their misses overlap."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


@intrinsic
def _count_at_most16(typingctx: Any, arr: Any, start: Any, u: Any) -> Any:
    """How many of the 16 float64 values arr[start:start + 16] are ≤ u (NaN counts as not): one 16-wide
    compare, its mask as 16 bits, and a population count. Written as vector IR because the scalar loop
    compiles to 16 compares chained through one counter (each waits on the one before)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and isinstance(start, types.Integer)
            and u == types.float64):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], ary, [args[1]])
        vec = ir.VectorType(ir.DoubleType(), 16)
        values = builder.load(builder.bitcast(ptr, vec.as_pointer()), align=8)
        splat = builder.insert_element(ir.Constant(vec, ir.Undefined), args[2], ir.IntType(32)(0))
        splat = builder.shuffle_vector(splat, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16))
        mask = builder.bitcast(builder.fcmp_ordered("<=", values, splat), ir.IntType(16))
        return builder.zext(builder.ctpop(mask), ir.IntType(64))

    return types.int64(arr, start, u), codegen


@jit(inline=True)
def _find_draw(tree: Any, off: Any, u: float, n: int) -> int:
    """The first k with C[k] > u, clamped to n − 1 (u = total after rounding: the count can then pass the last
    group of a full level, whose read runs into the level above, stored after it; k ends at or above n)."""
    k = 0
    for j in range(off.size - 2, -1, -1):
        k = 16 * k + _count_at_most16(tree, off[j] + 16 * k, u)
    return min(k, n - 1)


@jit
def sample_major(S: Any, n: int, d: int) -> Any:
    """The factors S of every unit as (n, d) instead of (d, n), as much memory again: the sampler's copy, in
    which the d values of one drawn sample are adjacent (one or two cache lines instead of d)."""
    out = np.empty_like(S)
    for o in range(0, S.size, n * d):
        transpose(mat(S, o, d, n), mat(out, o, n, d))
    return out


@jit
def sample(Sk: Any, nu: Any, AT: Any, sizes: Any, woff: Any, rows: Any, cols: Any, u: Any, groups: int, n: int,
           d: int, scale: float, l2: float) -> Any:
    """Importance-sampled G[rows[t], cols[t]] (SPEC §3): ``groups`` estimates of s = u.shape[1] / groups draws
    each, from the uniforms of row t (group g uses u[t, g·s:(g + 1)·s]) → (groups, m). Sk: the factors
    sample-major (``sample_major``; S itself when d = 1).

    Each draw picks sample k with probability π_k ∝ ‖x_k‖‖y_k‖ (inverse CDF, built once per entry for all
    groups); an estimate is s·(1/s_draws) Σ x_kᵀ y_k / π_k, unbiased; an entry with Σ‖x_k‖‖y_k‖ = 0 is
    exactly 0, one with weights that are not finite numbers NaN.
    """
    m = u.shape[0]
    s = u.shape[1] // groups
    out = np.empty((groups, m), Sk.dtype)
    ones = np.ones(n, Sk.dtype)
    off = tree_levels(n)
    tree = np.full(off[-1], np.inf)
    tree[0] = 0.0
    C = tree[1:]  # C[k]: the sum of the weights through sample k; C[−1] = tree[0] = 0
    drawn = np.empty(s, np.int64)
    du = np.uint64(d)
    cum = prefix(sizes)
    for t in range(m):
        sp, ap, wp = _factor(Sk, AT, ones, sizes, woff, cum, rows[t], n, d)  # (n, d): the offsets of S's (d, n)
        sq, aq, _ = _factor(Sk, AT, ones, sizes, woff, cum, cols[t], n, d)
        nup, _ = _nu(nu, AT, ones, sizes, woff, cum, rows[t], n)
        nuq, _ = _nu(nu, AT, ones, sizes, woff, cum, cols[t], n)
        total = _running_sums(ap, nup, aq, nuq, C, n)
        diag = l2 if wp and rows[t] == cols[t] else 0.0
        if not (total > 0.0 and total < np.inf):
            for g in range(groups):
                out[g, t] = (0.0 if total == 0.0 else np.nan) + diag
            continue
        _build_tree(tree, off, n)
        for g in range(groups):
            # the samples of the group's draws first, with a prefetch of their factor rows (cache misses on
            # a large batch, which then overlap), then their terms
            for r in range(s):
                k = _find_draw(tree, off, u[t, g * s + r] * total, n)
                drawn[r] = k
                for e in (k * d, k * d + d - 1):  # a row of d values may span two cache lines
                    _prefetch(sp, e)
                    _prefetch(sq, e)
            acc = 0.0  # Σ x_k / w_k over the draws; × total / s at the end
            for r in range(s):  # (unsigned indices: a signed one makes every load test for wrap-around)
                k = np.uint64(drawn[r])
                k1 = k + np.uint64(1)
                wk = tree[k1] - tree[k]
                if wk > 0.0:  # (only after rounding: a sample of zero weight is never drawn)
                    dot = 0.0
                    for e in range(k * du, k1 * du):
                        dot += np.float64(sp[e]) * np.float64(sq[e])
                    acc += np.float64(ap[k]) * np.float64(aq[k]) * dot / wk
            out[g, t] = scale * (acc * total) / s + diag
    return out


# ---- G V from the factors alone (no forward or backward pass): 2 layer-GEMMs per layer ------------------------
@jit
def gnvp_space(sizes: Any, n: int, d: int, k: int) -> int:
    """Length of the flat workspace of ``gnvp`` on k directions: the packed V and P (N·k each, for k > 1 only),
    T and X, u."""
    N = 0
    for l in range(1, sizes.size):
        N += sizes[l] * (sizes[l - 1] + 1)  # an upper bound without biases too
    return (2 * N * k if k > 1 else 0) + 2 * n * k * np.max(sizes[1:]) + n * k * d


@jit
def _contract_in(Sl: Any, T: Any, vb: Any, u: Any) -> None:
    """u[j, c, s] += Σ_i S_l[i, c, s] (T[i·k + j, s] + v_b[i, j]) for S_l (n_l, d, n), T (n_l·k, n), u (k, d, n);
    v_b (n_l, k) is the bias part (empty without biases), added into T in place.

    The rows of S_l are read once for all k directions, two at a time; the innermost sweep runs over
    contiguous samples (it vectorizes).
    """
    n_l, d, n = Sl.shape
    k = u.shape[0]
    has_b = vb.size > 0
    for i in range(n_l):
        for j in range(k):
            t = T[i * k + j]
            if has_b:
                b = vb[i, j]
                for s in range(n):
                    t[s] += b
            for c in range(0, d - 1, 2):
                x0, x1, u0, u1 = Sl[i, c], Sl[i, c + 1], u[j, c], u[j, c + 1]
                for s in range(n):
                    u0[s] += x0[s] * t[s]
                    u1[s] += x1[s] * t[s]
            if d % 2:
                x0, u0 = Sl[i, d - 1], u[j, d - 1]
                for s in range(n):
                    u0[s] += x0[s] * t[s]


@jit
def _contract_out(Sl: Any, u: Any, T: Any) -> None:
    """T[i·k + j, s] = Σ_c S_l[i, c, s] u[j, c, s] for S_l (n_l, d, n), u (k, d, n), T (n_l·k, n); two rows
    of S_l at a time, sweeping contiguous samples as in ``_contract_in``."""
    n_l, d, n = Sl.shape
    k = u.shape[0]
    for i in range(n_l):
        for j in range(k):
            t = T[i * k + j]
            c0 = d % 2
            if c0:
                x0, u0 = Sl[i, 0], u[j, 0]
                for s in range(n):
                    t[s] = x0[s] * u0[s]
            else:
                x0, x1, u0, u1 = Sl[i, 0], Sl[i, 1], u[j, 0], u[j, 1]
                for s in range(n):
                    t[s] = x0[s] * u0[s] + x1[s] * u1[s]
                c0 = 2
            for c in range(c0, d, 2):
                x0, x1, u0, u1 = Sl[i, c], Sl[i, c + 1], u[j, c], u[j, c + 1]
                for s in range(n):
                    t[s] += x0[s] * u0[s] + x1[s] * u1[s]


@jit
def _row_sums_into(T: Any, P: Any, start: int) -> None:
    """P[start + r] = Σ_s T[r, s] (float64 sums): the bias block of every direction."""
    for r in range(T.shape[0]):
        P[start + r] = _row_sum(T, r)


@jit
def _carry_rows(T: Any, vb: Any, DT: Any, X: Any) -> None:
    """X[i·k + j, :] = φ′_lᵀ[i, :] ⊙ (T[i·k + j, :] + v_b[i, j]) for T, X (n_l·k, n), DT (n_l, n), v_b (n_l, k)
    or empty; X may be T."""
    n_l, n = DT.shape
    k = T.shape[0] // n_l
    has_b = vb.size > 0
    for r in range(T.shape[0]):
        f = DT[r // k]
        if has_b:
            b = vb[r // k, r % k]
            for s in range(n):
                X[r, s] = f[s] * (T[r, s] + b)
        else:
            for s in range(n):
                X[r, s] = f[s] * T[r, s]


@jit
def gnvp(S: Any, AT: Any, DT: Any, theta: Any, sizes: Any, woff: Any, boff: Any, n: int, d: int, scale: float,
         l2: float, V: Any, Vflat: Any, carry: Any, ws: Any) -> Any:
    """G V (N, k) = s·Ŝᵀ(Ŝ V) (+ λ P_W V) from the factors, V C-contiguous and ``Vflat`` its flat view;
    scratch from ``ws`` (``gnvp_space``).

    Blocks are unit-major: T_l is (n_l·k, n), row i·k + j holding unit i of direction j, so that a carried
    layer's GEMM with W takes all k directions at once. Per layer one GEMM T_l = [V_l rows, unit-major]
    A_{l−1}ᵀ, plus the bias part, and its contraction with S_l into u (k, d, n); u *= s; then per layer the
    transposed contraction T_l = S_l·u and one GEMM T_l A_{l−1} for the weight block of every direction, the
    bias block being the sums of T_l over the samples. A hidden layer with carry[l − 1] set skips S_l: its
    φ′_l ⊙ T_l goes on through W_{l+1} into T_{l+1} (and on the way back T_l = φ′_l ⊙ W_{l+1}ᵀ T_{l+1}), since
    S_l = Φ′_l W_{l+1}ᵀ S_{l+1}. For one vector the unit-major layout is V's own: the GEMMs read V and write the
    result in place, with no packing.
    """
    L = sizes.size - 1
    cum = prefix(sizes)
    N, k = V.shape
    width = np.max(sizes[1:])
    pos = np.zeros(1, np.int64)
    out = np.empty((N if k == 1 else 0, k), V.dtype)
    if k == 1:
        Vq, P = Vflat, out.reshape(N)
    else:
        Vq, P = take(ws, pos, N * k), take(ws, pos, N * k)
        pack(sizes, woff, boff, V, Vq[:0], Vq)
    T = take(ws, pos, n * k * width)
    X = take(ws, pos, n * k * width)
    u = take(ws, pos, n * k * d).reshape((k, d, n))
    u[:] = 0.0
    below = False  # whether X holds the carried φ′ ⊙ T of the layer below
    for l in range(1, L + 1):
        n_l, n_p = sizes[l], sizes[l - 1]
        Tl = mat(T, 0, n_l * k, n)
        A_T = mat(AT, n * cum[l - 1], n_p, n)
        gemm(mat(Vq, k * woff[l - 1], n_l * k, n_p), A_T, Tl)  # (n_l·k, n_{l−1}) @ (n_{l−1}, n)
        if below:  # + W_l (φ′_{l−1} ⊙ T_{l−1}): (n_l, n_{l−1}) @ (n_{l−1}, k·n), every direction at once
            gemm(weights(theta, sizes, woff, l), mat(X, 0, n_p, k * n), mat(T, 0, n_l, k * n), 1.0)
        vb = mat(Vq, k * boff[l - 1], n_l, k) if boff[l - 1] >= 0 else mat(Vq, 0, 0, k)
        below = l < L and carry[l - 1] != 0
        if below:
            _carry_rows(Tl, vb, mat(DT, n * (cum[l] - cum[1]), n_l, n), mat(X, 0, n_l * k, n))
        else:
            _contract_in(mat3(S, n * d * (cum[l] - cum[1]), n_l, d, n), Tl, vb, u)
    for j in range(k):
        for c in range(d):
            for s in range(n):
                u[j, c, s] *= scale
    cur, other = T, X  # T_l is built in cur; other holds T_{l+1}
    for l in range(L, 0, -1):
        n_l, n_p = sizes[l], sizes[l - 1]
        Tl = mat(cur, 0, n_l * k, n)
        A_T = mat(AT, n * cum[l - 1], n_p, n)
        if l < L and carry[l - 1] != 0:
            n_x = sizes[l + 1]
            gemm(weights(theta, sizes, woff, l + 1).T, mat(other, 0, n_x, k * n), mat(cur, 0, n_l, k * n))
            _carry_rows(Tl, mat(Vq, 0, 0, k), mat(DT, n * (cum[l] - cum[1]), n_l, n), Tl)
        else:
            _contract_out(mat3(S, n * d * (cum[l] - cum[1]), n_l, d, n), u, Tl)
        # T_l A_{l−1}: (n_l·k, n) @ (n, n_{l−1}), the weight block of every direction
        gemm(Tl, A_T.T, mat(P, k * woff[l - 1], n_l * k, n_p))
        if boff[l - 1] >= 0:
            _row_sums_into(Tl, P, k * boff[l - 1])
        cur, other = other, cur
    if k > 1:
        return unpack(sizes, woff, boff, k, P, P[:0], V, l2, True)
    if l2 != 0.0:
        add_weight_decay(sizes, woff, l2, V, out)
    return out
