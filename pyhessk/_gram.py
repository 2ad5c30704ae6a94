"""The sample-space route to the Gauss–Newton Hessian: its Gram matrix and exact damped solves (Woodbury).

With the stored GNH factors (SPEC §3), G = s·ŜᵀŜ + λ P_W, where Ŝ stacks the n·d rows
x_{k,c} = (C_kᵀ J_k)[c, :] and s is the reduction's 1/n or 1. For a damping δ the matrix
G + δI = D + s·ŜᵀŜ with the diagonal D = δ + λ on weights and δ on biases, so Woodbury gives

    (G + δI)⁻¹ B = D⁻¹B − s·D⁻¹Ŝᵀ (I + s·Ŝ D⁻¹ Ŝᵀ)⁻¹ Ŝ D⁻¹B,

an exact solve through the (n·d × n·d) sample-space Gram K = s·Ŝ D⁻¹ Ŝᵀ (ALGORITHMS §4.5). Neither J
nor G is ever formed: K is assembled layer by layer from S_l and A_{l−1},

    K[(k,c), (k',c')] = s Σ_l ⟨S_{l,k}[c, :], S_{l,k'}[c', :]⟩ · (a_{l−1,k}·a_{l−1,k'} / D_W + 1 / D_b),

in O(n²d²Σn_l + n²Σn_{l−1}) flops, and Ŝ·, Ŝᵀ· are the two halves of the factored product.
Everything here runs in float64 (the Gram's condition number is up to 1 + ‖G‖/δ), whatever the
network's dtype; results are returned in the network's dtype. The arrays' library decides where: NumPy and
SciPy on the host, CuPy (``cupy.linalg.cholesky``, ``cupyx.scipy.linalg.solve_triangular``) on the device
for a snapshot of GPU arrays, so the factors never leave it.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any
import warnings

import numpy as np
import scipy.linalg

from ._arrays import namespace_of, to_host
from .backends._base import ModelSpec
from .backends.numpy.mlp import factor_backward, factor_forward

#: the default bound on n·d, the size of the Gram (16384² float64 numbers = 2 GiB)
DEFAULT_MAX_SIZE = 16384


def gram_bytes(size: int) -> int:
    """Memory of the Gram and its Cholesky factor (computed in place): size² float64 numbers."""
    return size * size * 8


@dataclass
class WoodburySolver:
    """A factorised I + K for one damping δ, reused by every right-hand side."""

    model: ModelSpec
    layers: list[tuple[Any, Any]]  # (S_l (n_l, n, d), A_{l−1} (n, n_{l−1})) per layer, host or device
    scale: float
    dinv: Any  # D⁻¹ (N,)
    chol: Any  # lower Cholesky factor of I + K, (n·d, n·d)

    def solve(self, B: Any) -> Any:
        """(G + δI)⁻¹ B for B (N, k) float64, in the factors' library → (N, k) float64."""
        xp = namespace_of(self.chol)
        n, d = self.layers[0][1].shape[0], self.layers[0][0].shape[2]
        k = B.shape[1]
        Y = B * self.dinv[:, None]  # D⁻¹ B
        u = factor_forward(self.model, self.layers, xp.ascontiguousarray(Y.T))  # Ŝ D⁻¹ B: (n, k, d)
        T = u.transpose(0, 2, 1).reshape(n * d, k)
        if xp is np:
            Z = scipy.linalg.cho_solve((self.chol, True), T, check_finite=False)
        else:  # L Lᵀ Z = T as two triangular solves
            from cupyx.scipy.linalg import solve_triangular

            Z = solve_triangular(self.chol, solve_triangular(self.chol, T, lower=True), trans="T", lower=True)
        Z = xp.ascontiguousarray(Z.reshape(n, d, k).transpose(0, 2, 1))
        correction = factor_backward(self.model, self.layers, Z).T  # Ŝᵀ Z: (N, k)
        return Y - self.scale * self.dinv[:, None] * correction


def diagonal_shift(model: ModelSpec, damping: float) -> tuple[float, float]:
    """D on the weights and on the biases: (δ + λ, δ)."""
    return damping + model.l2, damping


def sample_gram(model: ModelSpec, layers: list[tuple[Any, Any]], scale: float, dw: float,
                db: float, chunk_size: int) -> Any:
    """K = s·Ŝ D⁻¹ Ŝᵀ (n·d, n·d) in float64, rows ordered (sample, output); built ``chunk_size`` samples
    of rows at a time, so that the working memory beyond K is chunk_size·d·n·d numbers."""
    A0, S0 = layers[0][1], layers[0][0]
    xp = namespace_of(S0)
    n, d = A0.shape[0], S0.shape[2]
    K = xp.zeros((n * d, n * d), dtype=xp.float64)
    for S, A in layers:
        n_l = S.shape[0]
        St = xp.ascontiguousarray(S.transpose(1, 2, 0), dtype=xp.float64).reshape(n * d, n_l)  # rows (k, c)
        A64 = xp.asarray(A, dtype=xp.float64)
        F = A64 @ A64.T  # a_{l−1,k}·a_{l−1,k'}: (n, n)
        F /= dw
        if model.bias:
            F += 1.0 / db
        for r0 in range(0, n, chunk_size):
            r1 = min(n, r0 + chunk_size)
            M = St[r0 * d : r1 * d] @ St.T  # ⟨S_{l,k}[c, :], S_{l,k'}[c', :]⟩: (rows, n·d)
            M = M.reshape(r1 - r0, d, n, d)
            M *= F[r0:r1, None, :, None]
            K[r0 * d : r1 * d] += M.reshape((r1 - r0) * d, n * d)
    K *= scale
    return K


#: Condition numbers of G + δI above which ``factorise`` warns (a float64 solve may then have lost half of
#: its 16 digits), and the one a too-small damping is advised to come back under.
ILL_CONDITIONED = 1e8
_ADVISED_CONDITION = 1e12


def _too_small(damping: float, cond: float | None) -> ValueError:
    """The error for a damping at which G + δI is numerically singular in float64."""
    if cond is None:
        why = "the sample-space Gram overflows float64"
        advice = "raise damping by many orders of magnitude"
    else:
        why = f"its condition number is at least {cond:.1e}, past 1/ε = {1 / np.finfo(np.float64).eps:.1e} of float64"
        advice = f"use damping of at least about {damping * cond / _ADVISED_CONDITION:.1e}"
    return ValueError(f"damping={damping!r} is too small for G: G + damping·I is numerically singular ({why}); "
                      f"{advice}, or solve the undamped problem another way (e.g. least squares)")


def factorise(model: ModelSpec, layers: list[tuple[Any, Any]], scale: float, damping: float,
              chunk_size: int) -> WoodburySolver:
    """Build the Gram for δ = ``damping`` and its Cholesky factor (I + K is SPD: K is PSD), where the
    factors live (on the device, ``cupy.linalg.cholesky`` needs a second n·d × n·d array).

    cond(G + δI) = 1 + λ_max(K) ≥ 1 + max_i K_ii (the nonzero eigenvalues of K are those of D^{-1/2} G
    D^{-1/2}). Past 1/ε of float64 the factorisation fails or the Gram overflows: ValueError naming the
    damping. Past ``ILL_CONDITIONED`` it warns (``scipy.linalg.LinAlgWarning``)."""
    dw, db = diagonal_shift(model, damping)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow is reported below
        K = sample_gram(model, layers, scale, dw, db, chunk_size)
    xp = namespace_of(K)
    diag = xp.arange(K.shape[0])
    peak, finite = 0.0, True
    if K.shape[0]:  # the diagonal's peak and whether every entry is finite, in one read from the device
        top, ok = to_host(xp.stack([xp.max(K[diag, diag]), xp.isfinite(K).all().astype(K.dtype)])).tolist()
        peak, finite = float(top), ok != 0.0
    if not math.isfinite(peak) or not finite:
        raise _too_small(damping, None)
    cond = 1.0 + max(peak, 0.0)
    K[diag, diag] += 1.0
    try:
        if xp is np:
            chol = scipy.linalg.cholesky(K, lower=True, overwrite_a=True, check_finite=False)
        else:
            chol = xp.linalg.cholesky(K)  # CuPy leaves NaN where the factorisation fails
            del K
            if not bool(xp.isfinite(chol).all()):
                raise np.linalg.LinAlgError("not positive definite")
    except np.linalg.LinAlgError:
        raise _too_small(damping, cond) from None
    if cond > ILL_CONDITIONED:
        warnings.warn(scipy.linalg.LinAlgWarning(
            f"G + damping·I is ill-conditioned at damping={damping!r} (condition number at least {cond:.1e}): "
            f"the solution may have lost about {math.log10(cond):.0f} of float64's 16 digits"), stacklevel=3)
    mask = xp.asarray(model.weight_mask(np.float64))
    dinv = 1.0 / (db + (dw - db) * mask)
    return WoodburySolver(model, layers, scale, dinv, chol)


def default_chunk(n: int, d: int, budget: int = 1 << 25) -> int:
    """Samples per Gram chunk so that one chunk (chunk·d × n·d float64) stays near ``budget`` numbers."""
    return max(1, min(n, budget // max(1, d * n * d)))


def as_layers(engine: Any, fac: Any, model: ModelSpec, xp: Any = np) -> list[tuple[Any, Any]]:
    """(S_l, A_{l−1}) of every layer as arrays of ``xp``: the engine's own (device views on the cuda engine
    for CuPy), or host arrays for NumPy (copied from the device where they live there)."""
    move = to_host if xp is np else xp.asarray
    return [tuple(move(a) for a in engine.gnh_layer_factors(fac, l)) for l in range(1, model.num_layers + 1)]
