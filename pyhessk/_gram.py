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
network's dtype; results are returned in the network's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg

from ._arrays import to_host
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
    layers: list[tuple[np.ndarray, np.ndarray]]  # (S_l (n_l, n, d), A_{l−1} (n, n_{l−1})) per layer
    scale: float
    dinv: np.ndarray  # D⁻¹ (N,)
    chol: np.ndarray  # lower Cholesky factor of I + K, (n·d, n·d)

    def solve(self, B: np.ndarray) -> np.ndarray:
        """(G + δI)⁻¹ B for B (N, k) → (N, k) float64."""
        n, d = self.layers[0][1].shape[0], self.layers[0][0].shape[2]
        k = B.shape[1]
        Y = B * self.dinv[:, None]  # D⁻¹ B
        u = factor_forward(self.model, self.layers, np.ascontiguousarray(Y.T))  # Ŝ D⁻¹ B: (n, k, d)
        T = u.transpose(0, 2, 1).reshape(n * d, k)
        Z = scipy.linalg.cho_solve((self.chol, True), T, check_finite=False)
        Z = np.ascontiguousarray(Z.reshape(n, d, k).transpose(0, 2, 1))
        correction = factor_backward(self.model, self.layers, Z).T  # Ŝᵀ Z: (N, k)
        return Y - self.scale * self.dinv[:, None] * correction


def diagonal_shift(model: ModelSpec, damping: float) -> tuple[float, float]:
    """D on the weights and on the biases: (δ + λ, δ)."""
    return damping + model.l2, damping


def sample_gram(model: ModelSpec, layers: list[tuple[np.ndarray, np.ndarray]], scale: float, dw: float,
                db: float, chunk_size: int) -> np.ndarray:
    """K = s·Ŝ D⁻¹ Ŝᵀ (n·d, n·d) in float64, rows ordered (sample, output); built ``chunk_size`` samples
    of rows at a time, so that the working memory beyond K is chunk_size·d·n·d numbers."""
    A0, S0 = layers[0][1], layers[0][0]
    n, d = A0.shape[0], S0.shape[2]
    K = np.zeros((n * d, n * d))
    for S, A in layers:
        n_l = S.shape[0]
        St = np.ascontiguousarray(S.transpose(1, 2, 0), dtype=np.float64).reshape(n * d, n_l)  # rows (k, c)
        A64 = np.asarray(A, dtype=np.float64)
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


def factorise(model: ModelSpec, layers: list[tuple[np.ndarray, np.ndarray]], scale: float, damping: float,
              chunk_size: int) -> WoodburySolver:
    """Build the Gram for δ = ``damping`` and its Cholesky factor (I + K is SPD: K is PSD)."""
    dw, db = diagonal_shift(model, damping)
    K = sample_gram(model, layers, scale, dw, db, chunk_size)
    K[np.diag_indices_from(K)] += 1.0
    chol = scipy.linalg.cholesky(K, lower=True, overwrite_a=True, check_finite=False)
    mask = model.weight_mask(np.float64)
    dinv = 1.0 / (db + (dw - db) * mask)
    return WoodburySolver(model, layers, scale, dinv, chol)


def default_chunk(n: int, d: int, budget: int = 1 << 25) -> int:
    """Samples per Gram chunk so that one chunk (chunk·d × n·d float64) stays near ``budget`` numbers."""
    return max(1, min(n, budget // max(1, d * n * d)))


def as_layers(engine: Any, fac: Any, model: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(S_l, A_{l−1}) of every layer as host arrays (copied from the device on the cuda engine)."""
    return [tuple(to_host(a) for a in engine.gnh_layer_factors(fac, l)) for l in range(1, model.num_layers + 1)]
