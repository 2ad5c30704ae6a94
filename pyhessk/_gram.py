"""Exact damped solves with the Gauss–Newton Hessian from its stored factors, in the smaller of two spaces.

With the stored GNH factors (SPEC §3), G = s·ŜᵀŜ + λ P_W, where Ŝ stacks the n·d rows
x_{k,c} = (C_kᵀ J_k)[c, :] and s is the reduction's 1/n or 1. For a damping δ the matrix
G + δI = D + s·ŜᵀŜ with the diagonal D = δ + λ on weights and δ on biases. Three routes solve it exactly:

- **Sample space (Woodbury)**, when n·d < N:

      (G + δI)⁻¹ B = D⁻¹(B − Ŝᵀ y),   (I + K) y = s·Ŝ D⁻¹ B,

  through the (n·d × n·d) Gram K = s·Ŝ D⁻¹ Ŝᵀ (ALGORITHMS §4.5). Neither J nor G is ever formed: K is
  assembled layer by layer from S_l and A_{l−1},

      K[(k,c), (k',c')] = s Σ_l ⟨S_{l,k}[c, :], S_{l,k'}[c', :]⟩ · (a_{l−1,k}·a_{l−1,k'} / D_W + 1 / D_b),

  in O(n²d²Σn_l + n²Σn_{l−1}) flops, and Ŝ·, Ŝᵀ· are the two halves of the factored product.
- **Sample space, biases apart**, when n·d < N and the weight decay λ dwarfs δ (or δ = 0). Then D is far
  from a multiple of I: the Gram above would hold 1/δ on the biases beside 1/(δ + λ) on the weights, and
  D⁻¹B − D⁻¹Ŝᵀy would cancel catastrophically although G + δI itself is well conditioned. So only the
  weights are eliminated through K_W = s·Ŝ_W D_W⁻¹ Ŝ_Wᵀ, and the Σn_l biases are solved from the Schur
  complement Σ = D_b + s·Ŝ_bᵀ(I + K_W)⁻¹Ŝ_b, a small SPD matrix whose condition number is at most that of
  G + δI (δ = 0 is allowed when Σ is invertible).
- **Parameter space**, when N ≤ n·d: G + δI (N × N) assembled in float64 from the explicit rows of Ŝ,
  chunk_size samples at a time, and factorised directly. Here the Gram would be larger, and, where G has
  full rank, far worse conditioned than G + δI.

Everything runs in float64, whatever the network's dtype; results are returned in the network's dtype.
The arrays' library decides where: NumPy and SciPy on the host, CuPy (``cupy.linalg.cholesky``,
``cupyx.scipy.linalg.solve_triangular``) on the device for a snapshot of GPU arrays, so the factors never
leave it.

Memory (``gram_bytes``): on the host the matrix is the only array of its size. Its rows are added in
place (the parameter space through BLAS ``dsyrk`` into the lower triangle), and LAPACK factorises it in
place: ``potrf`` on the Fortran-ordered view Aᵀ gives U = Lᵀ there, so L is the C-ordered A, and solves
pass U to ``potrs``. On the device the full symmetric matrix is assembled (each parameter-space chunk
through an N × N product) and ``cupy.linalg.cholesky`` returns a new array, so the peak there is about
three matrices.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any
import warnings

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dsyrk

from ._arrays import namespace_of, to_host
from .backends._base import ModelSpec
from .backends.numpy.mlp import factor_backward, factor_forward

#: the default bound on the size of the system factorised: n·d, or N where that is smaller
#: (16384² float64 numbers = 2 GiB for the matrix; ``gram_bytes`` gives the peak with the working memory)
DEFAULT_MAX_SIZE = 16384

#: Condition numbers of G + δI above which ``factorise`` warns (a float64 solve may then have lost half of
#: its 16 digits), past which it refuses (numerically singular in float64), and the one a too-small damping
#: is advised to come back under.
ILL_CONDITIONED = 1e8
SINGULAR = 1.0 / np.finfo(np.float64).eps
_ADVISED_CONDITION = 1e12

#: The sample-space route keeps the biases apart once D's weight part exceeds its bias part by this factor.
BIAS_APART = 2.0


def gram_bytes(model: ModelSpec, n: int, damping: float, chunk_size: int) -> int:
    """Peak host memory, in bytes, of building and factorising the system of ``route`` in float64.

    The matrix (size = min(N, n·d); factorised in place) plus the largest working set beside it: one
    chunk of rows (chunk_size·d·N numbers in the parameter space, chunk_size·d·n·d and chunk_size·n for
    the Gram) with one layer's factors converted to float64 (n·d·n_l + n·n_{l−1} at most, counted although
    a float64 snapshot of host arrays needs no copy), or, with the biases apart, E = L⁻¹Ŝ_b and Σ
    (n·d·Σn_l + (Σn_l)²). Vectors (D, its inverse, the power iteration's) and NumPy's ufunc buffers add
    8·N + 2¹⁴ numbers at most. The solve then needs O((N + n·Σn_l)·k) more for k right-hand sides. A
    device snapshot needs about two matrices more (see the module notes).
    """
    N, d = model.num_params, model.sizes[-1]
    nd = n * d
    size = min(N, nd)
    m = min(n, chunk_size)
    wide, fan_in = max(model.sizes[1:]), max(model.sizes[:-1])
    way = route(model, n, damping)
    if way == "parameter":
        work = m * d * N + 2 * m * d * wide + m * fan_in  # Ŝ's rows; S_l and A_{l−1} of those samples
    else:
        work = m * d * nd + m * n + nd * wide + n * fan_in  # Gram rows, F's rows, S_l and A_{l−1}
        if way == "biases apart":
            nb = num_biases(model)
            work = max(work, nd * nb + nb * nb)
    return 8 * (size * size + work + 8 * N + (1 << 14))


def human_bytes(nbytes: float) -> str:
    """A byte count in the largest unit that keeps it at least 1: "12 B", "3.4 KiB", "2.00 GiB"."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{int(nbytes)} B"


def diagonal_shift(model: ModelSpec, damping: float) -> tuple[float, float]:
    """D on the weights and on the biases: (δ + λ, δ)."""
    return damping + model.l2, damping


def num_biases(model: ModelSpec) -> int:
    return sum(model.sizes[1:]) if model.bias else 0


def route(model: ModelSpec, n: int, damping: float) -> str:
    """Which system ``factorise`` solves: "parameter" (G + δI itself, N ≤ n·d), "biases apart" or
    "woodbury" (through the sample-space Gram). ValueError, with the reason, where G + δI is singular
    whatever the data (δ = 0 without the weight decay or the rows to make it invertible)."""
    N, nd = model.num_params, n * model.sizes[-1]
    dw, db = diagonal_shift(model, damping)
    if N <= nd:
        return "parameter"
    nb = num_biases(model)
    if dw <= 0:
        raise ValueError(
            f"damping must be > 0 (got {damping!r}) without weight decay: G has rank at most n·d = {nd} < N = {N}, "
            "so G + 0·I is singular")
    if nb and db <= 0 and nb >= nd:
        raise ValueError(
            f"damping must be > 0 (got {damping!r}) here: the biases carry no weight decay, and G has rank at most "
            f"n·d = {nd} on the {nb} biases, so G + λ·P_W is singular")
    if nb and (db <= 0 or (dw > BIAS_APART * db and nb < nd)):
        return "biases apart"
    return "woodbury"


def system_size(model: ModelSpec, n: int) -> int:
    """The order of the matrix ``factorise`` builds: min(N, n·d)."""
    return min(model.num_params, n * model.sizes[-1])


# ---- linear algebra where the arrays live --------------------------------------------------------------
def _cholesky(A: Any) -> Any:
    """Lower Cholesky factor L of a C-ordered A; LinAlgError where A is not numerically SPD.

    On the host only A's lower triangle is read, and A is overwritten: L is A itself (``potrf`` gives
    U = Lᵀ in the Fortran-ordered view Aᵀ, and clears the rest). CuPy reads the full A and returns a new
    array."""
    xp = namespace_of(A)
    if xp is np:
        return scipy.linalg.cholesky(A.T, lower=False, overwrite_a=True, check_finite=False).T
    L = xp.linalg.cholesky(A)  # CuPy leaves NaN where the factorisation fails
    if not bool(xp.isfinite(L).all()):
        raise np.linalg.LinAlgError("not positive definite")
    return L


def _solve_lower(L: Any, B: Any, trans: bool = False, overwrite: bool = False) -> Any:
    """L⁻¹B, or L⁻ᵀB with ``trans``, for a lower-triangular L; on the host ``overwrite`` solves in place
    where B is Fortran-ordered."""
    if namespace_of(L) is np:
        return scipy.linalg.solve_triangular(L, B, lower=True, trans=1 if trans else 0, overwrite_b=overwrite,
                                             check_finite=False)
    from cupyx.scipy.linalg import solve_triangular

    return solve_triangular(L, B, lower=True, trans="T" if trans else "N")


def _cho_solve(L: Any, B: Any) -> Any:
    """(L Lᵀ)⁻¹ B (on the host through U = Lᵀ, Fortran-ordered where ``_cholesky`` left L C-ordered, so that
    LAPACK copies no factor)."""
    if namespace_of(L) is np:
        factor = (L, True) if L.flags.f_contiguous else (L.T, False)
        return scipy.linalg.cho_solve(factor, B, check_finite=False)
    return _solve_lower(L, _solve_lower(L, B), trans=True)


def _diag_stats(A: Any) -> tuple[float, float, bool]:
    """(max, min) of A's diagonal and whether all of A is finite (its max and min, which NaN propagates to:
    no mask of A's size), in one read from the device."""
    xp = namespace_of(A)
    if A.shape[0] == 0:
        return 0.0, 0.0, True
    dg = xp.diagonal(A)
    top, low, hi, lo = to_host(xp.stack([xp.max(dg), xp.min(dg), xp.max(A), xp.min(A)])).tolist()
    return float(top), float(low), math.isfinite(hi) and math.isfinite(lo)


def _extremes(L: Any, iters: int = 12) -> tuple[float, float]:
    """Lower bounds (λ̂_max, 1/λ̂_min) on λ_max(A) and 1/λ_min(A) for A = L Lᵀ: Rayleigh quotients after
    ``iters`` steps of power iteration on A and on A⁻¹ (two triangular solves a step), from a fixed start.
    Their product is a lower bound on cond(A) that tends to it; a numerically singular A shows up at once.
    O(iters·m²), against the factorisation's m³/3."""
    xp = namespace_of(L)
    m = L.shape[0]
    if m == 0:
        return 0.0, 0.0
    start = xp.asarray(np.random.default_rng(0).standard_normal((m, 2)))
    hi, lo = start[:, :1], start[:, 1:]
    for _ in range(iters):
        hi = L @ (L.T @ hi)
        hi = hi / xp.linalg.norm(hi)
        lo = _cho_solve(L, lo)
        lo = lo / xp.linalg.norm(lo)
    top, inv = to_host(xp.stack([xp.sum((L.T @ hi) ** 2), xp.sum(_solve_lower(L, lo) ** 2)])).tolist()
    return (float(top), float(inv)) if math.isfinite(top) and math.isfinite(inv) else (math.inf, math.inf)


# ---- the factor rows ------------------------------------------------------------------------------------
def sample_gram(model: ModelSpec, layers: list[tuple[Any, Any]], scale: float, dw: float,
                db: float | None, chunk_size: int) -> Any:
    """K = s·Ŝ D⁻¹ Ŝᵀ (n·d, n·d) in float64, rows ordered (sample, output); built ``chunk_size`` samples
    of rows at a time, so that the working memory beyond K is chunk_size·d·n·d + chunk_size·n numbers (and
    a float64 copy of a layer's S_l and A_{l−1} where they are not float64 already). ``db`` None: the
    weights' rows only (K_W)."""
    A0, S0 = layers[0][1], layers[0][0]
    xp = namespace_of(S0)
    n, d = A0.shape[0], S0.shape[2]
    K = xp.zeros((n * d, n * d), dtype=xp.float64)
    for S, A in layers:
        n_l = S.shape[0]
        St = xp.asarray(S, dtype=xp.float64).reshape(n_l, n * d).T  # rows (k, c): a view where S is
        A64 = xp.asarray(A, dtype=xp.float64)
        for r0 in range(0, n, chunk_size):
            r1 = min(n, r0 + chunk_size)
            M = St[r0 * d : r1 * d] @ St.T  # ⟨S_{l,k}[c, :], S_{l,k'}[c', :]⟩: (rows, n·d)
            M = M.reshape(r1 - r0, d, n, d)
            F = A64[r0:r1] @ A64.T  # a_{l−1,k}·a_{l−1,k'}: (rows, n)
            F /= dw
            if model.bias and db is not None:
                F += 1.0 / db
            M *= F[:, None, :, None]
            rows = K[r0 * d : r1 * d]  # added through a view: K[a:b] += M would copy the rows back over themselves
            rows += M.reshape((r1 - r0) * d, n * d)
            del M, F, rows  # freed before the next chunk's are made
    K *= scale
    return K


def factor_rows(model: ModelSpec, layers: list[tuple[Any, Any]], r0: int, r1: int, weights: bool = True) -> Any:
    """The rows of Ŝ of samples [r0, r1) as a dense float64 ((r1 − r0)·d, N) array, rows (sample, output):
    Ŝ[(k,c), W_l[i,j]] = S_{l,k}[c, i]·a_{l−1,k}[j] and Ŝ[(k,c), b_l[i]] = S_{l,k}[c, i]. Without
    ``weights``, only the bias columns ((r1 − r0)·d, Σn_l), Fortran-ordered (a triangular solve can then
    overwrite them). The weight blocks are written in place, with no temporary of their size."""
    xp = namespace_of(layers[0][0])
    d, m = layers[0][0].shape[2], r1 - r0
    cols = model.num_params if weights else num_biases(model)
    out = xp.zeros((m, d, cols), dtype=xp.float64) if weights else xp.zeros((cols, m * d), dtype=xp.float64).T
    at = 0
    for (S, A), (w0, b0, end) in zip(layers, model.offsets, strict=True):
        St = xp.asarray(S[:, r0:r1, :], dtype=xp.float64).transpose(1, 2, 0)  # (m, d, n_l)
        if weights:
            Ar = xp.asarray(A[r0:r1], dtype=xp.float64)
            n_l, n_in = St.shape[2], Ar.shape[1]
            # splitting the contiguous last axis keeps a view of out
            xp.multiply(St[:, :, :, None], Ar[:, None, None, :], out=out[:, :, w0:b0].reshape(m, d, n_l, n_in))
            if model.bias:
                out[:, :, b0:end] = St
        else:
            out[:, at : at + end - b0] = St.reshape(m * d, end - b0)
            at += end - b0
    return out.reshape(m * d, cols) if weights else out


# ---- the solvers ----------------------------------------------------------------------------------------
@dataclass
class ParameterSolver:
    """A factorised G + δI (N × N), for N ≤ n·d."""

    chol: Any  # lower Cholesky factor of G + δI

    def solve(self, B: Any) -> Any:
        """(G + δI)⁻¹ B for B (N, k) float64 → (N, k) float64."""
        return _cho_solve(self.chol, B)


@dataclass
class WoodburySolver:
    """A factorised I + K (and, with the biases apart, their Schur complement) for one damping δ, reused
    by every right-hand side."""

    model: ModelSpec
    layers: list[tuple[Any, Any]]  # (S_l (n_l, n, d), A_{l−1} (n, n_{l−1})) per layer, host or device
    scale: float
    dinv: Any  # D⁻¹ (N,) on the parameters eliminated through K; 0 on biases kept apart
    chol: Any  # lower Cholesky factor of I + K, (n·d, n·d)
    bias_rows: Any = None  # biases apart: E = L⁻¹ Ŝ_b (n·d, Σn_l)
    schur: Any = None  # biases apart: lower Cholesky factor of Σ = D_b + s·EᵀE
    bias_index: Any = None  # biases apart: their positions in θ

    def solve(self, B: Any) -> Any:
        """(G + δI)⁻¹ B for B (N, k) float64, in the factors' library → (N, k) float64."""
        xp = namespace_of(self.chol)
        n, d = self.layers[0][1].shape[0], self.layers[0][0].shape[2]
        k = B.shape[1]
        u = factor_forward(self.model, self.layers, xp.ascontiguousarray((B * self.dinv[:, None]).T))  # Ŝ D⁻¹B
        z = _solve_lower(self.chol, self.scale * u.transpose(0, 2, 1).reshape(n * d, k))  # L⁻¹ s Ŝ D⁻¹B
        if self.schur is not None:  # x_b = Σ⁻¹(B_b − Eᵀz), then z += s E x_b
            xb = _cho_solve(self.schur, B[self.bias_index] - self.bias_rows.T @ z)
            z = z + self.scale * (self.bias_rows @ xb)
        y = _solve_lower(self.chol, z, trans=True)  # y = (I + K)⁻¹ s Ŝ (D⁻¹B + [0; x_b])
        Y = xp.ascontiguousarray(y.reshape(n, d, k).transpose(0, 2, 1))
        x = (B - factor_backward(self.model, self.layers, Y).T) * self.dinv[:, None]  # D⁻¹(B − Ŝᵀy)
        if self.schur is not None:
            x[self.bias_index] = xb
        return x


def _too_small(damping: float, cond: float | None, big: float = 0.0) -> ValueError:
    """The error for a damping at which G + δI is numerically singular in float64: ``cond`` a lower bound on
    its condition number (None: the system overflowed; inf: a factorisation failed), ``big`` one on ‖G + δI‖."""
    if cond is None:
        why = "the system overflows float64"
    elif math.isinf(cond):
        why = "it is singular to working precision: its diagonal holds a zero or its Cholesky factorisation fails"
    else:
        why = f"its condition number is at least about {cond:.1e}, past 1/ε = {SINGULAR:.1e} of float64"
    advised = big / _ADVISED_CONDITION if big > 0 and math.isfinite(big) else 0.0
    if cond is not None and math.isfinite(cond) and damping > 0:
        advised = max(advised, damping * cond / _ADVISED_CONDITION)
    advice = f"use damping of at least about {advised:.1e}" if advised > 0 else "raise damping by many orders of magnitude"
    return ValueError(f"damping={damping!r} is too small for G: G + damping·I is numerically singular ({why}); "
                      f"{advice}, or solve the undamped problem another way (e.g. least squares)")


def _factor(A: Any, damping: float, big: float) -> tuple[Any, float, float]:
    """A's Cholesky factor, with lower bounds on λ_max(A) and cond(A); ValueError where the factorisation
    fails (``big`` a lower bound on ‖G + δI‖, for the advice)."""
    try:
        L = _cholesky(A)
    except np.linalg.LinAlgError:
        raise _too_small(damping, math.inf, big) from None
    top, inv = _extremes(L)
    return L, top, top * inv


def factorise(model: ModelSpec, layers: list[tuple[Any, Any]], scale: float, damping: float,
              chunk_size: int) -> ParameterSolver | WoodburySolver:
    """Build and factorise the system of ``route`` for δ = ``damping``, where the factors live.

    Each route checks lower bounds on cond(G + δI) that hold on it: in the parameter space, the ratio of
    the diagonal's extremes and a few steps of power iteration on (G + δI)^{±1} (``_extremes``); through
    the Gram K, λ_max(I + K) ≥ 1 + max_i K_ii (equal to cond(G + δI) where D = δI and n·d < N, since G is
    then singular); with the biases apart, the same for the weights' Gram where the weights outnumber n·d,
    and cond(Σ) ≤ cond(G + δI) (a Schur complement's eigenvalues lie within the matrix's). Past 1/ε of
    float64, or where a factorisation fails or overflows: ValueError naming the damping. Past
    ``ILL_CONDITIONED``: a ``scipy.linalg.LinAlgWarning`` with the bound."""
    n = layers[0][1].shape[0]
    way = route(model, n, damping)
    dw, db = diagonal_shift(model, damping)
    xp = namespace_of(layers[0][0])
    mask = xp.asarray(model.weight_mask(np.float64))
    diag = db + (dw - db) * mask  # D
    # Bounds big ≤ λ_max(G + δI) and small ≥ λ_min(G + δI), tightened step by step; cond(G + δI) ≥ big/small.
    big, small = 0.0, math.inf

    def check() -> float:
        cond = big / small if small > 0 else math.inf
        if not cond <= SINGULAR:
            raise _too_small(damping, cond, big)
        return cond

    def diagonal_of(M: Any) -> tuple[float, float]:
        top, low, finite = _diag_stats(M)
        if not (finite and math.isfinite(top)):
            raise _too_small(damping, None)
        return top, low

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is reported below
        if way == "parameter":
            A = xp.zeros((model.num_params, model.num_params), dtype=xp.float64)
            for r0 in range(0, n, chunk_size):
                R = factor_rows(model, layers, r0, min(n, r0 + chunk_size))
                if xp is np:  # s·RᵀR added in place to A's lower triangle (the upper of the Fortran-ordered Aᵀ)
                    dsyrk(scale, R.T, beta=1.0, c=A.T, trans=0, lower=0, overwrite_c=1)
                else:
                    A += R.T @ R
                del R  # freed before the next chunk's rows are made
            if xp is not np:
                A *= scale
            A[xp.diag_indices(model.num_params)] += diag
        else:
            A = sample_gram(model, layers, scale, dw, None if way == "biases apart" else db, chunk_size)
            A[xp.diag_indices(A.shape[0])] += 1.0
        top, low = diagonal_of(A)
        if way == "parameter":  # the eigenvalues enclose the diagonal
            big, small = top, low
        else:  # I + K = D^{-1/2}(G + δI)D^{-1/2} on the range of Ŝᵀ (D the eliminated part); where the
            # eliminated parameters outnumber the n·d rows, a direction Ŝ annihilates has G + δI's value D
            d_low = db if way == "woodbury" and model.bias else dw
            big = d_low * top
            nb, nd = num_biases(model), A.shape[0]
            if way == "woodbury" and nb > nd:  # G + δI has the value δ on some bias direction
                small = db
            elif model.num_params - nb > nd:  # and δ + λ on some weight direction
                small = dw
            else:  # a direction Ŝ annihilates has a value between δ and δ + λ
                small = dw if way == "woodbury" else math.inf
        check()
        chol, lam_max, ratio = _factor(A, damping, big)
        del A
        if way == "parameter":
            big, small = max(big, lam_max), min(small, lam_max / ratio if ratio > 0 else math.inf)
        else:
            big = max(big, d_low * lam_max)
        cond = check()
        if way == "parameter":
            solver: ParameterSolver | WoodburySolver = ParameterSolver(chol)
        elif way == "woodbury":
            solver = WoodburySolver(model, layers, scale, 1.0 / diag, chol)
        else:  # E = L⁻¹Ŝ_b, Σ = D_b + s EᵀE: the Schur complement of the weights in G + δI, whose
            # eigenvalues lie within those of G + δI
            E = _solve_lower(chol, factor_rows(model, layers, 0, n, weights=False), overwrite=True)
            sigma = E.T @ E
            sigma *= scale
            sigma[xp.diag_indices(sigma.shape[0])] += db
            top, low = diagonal_of(sigma)
            big, small = max(big, top), min(small, low)
            check()
            schur, top, ratio = _factor(sigma, damping, big)
            big, small = max(big, top), min(small, top / ratio if ratio > 0 else math.inf)  # top/ratio ≥ λ_min(Σ)
            cond = check()
            solver = WoodburySolver(model, layers, scale, mask / dw, chol, E, schur, xp.flatnonzero(mask == 0))
    if cond > ILL_CONDITIONED:
        warnings.warn(scipy.linalg.LinAlgWarning(
            f"G + damping·I is ill-conditioned at damping={damping!r} (condition number at least about {cond:.1e}): "
            f"the solution may have lost about {math.log10(cond):.0f} of float64's 16 digits"), stacklevel=3)
    return solver


def default_chunk(n: int, d: int, budget: int = 1 << 25) -> int:
    """Samples per Gram chunk so that one chunk (chunk·d × n·d float64) stays near ``budget`` numbers."""
    return max(1, min(n, budget // max(1, d * n * d)))


def as_layers(engine: Any, fac: Any, model: ModelSpec, xp: Any = np) -> list[tuple[Any, Any]]:
    """(S_l, A_{l−1}) of every layer as arrays of ``xp``: the engine's own (device views on the cuda engine
    for CuPy), or host arrays for NumPy (copied from the device where they live there)."""
    move = to_host if xp is np else xp.asarray
    return [tuple(move(a) for a in engine.gnh_layer_factors(fac, l)) for l in range(1, model.num_layers + 1)]
