"""The NumPy engine's one table of loss heads.

Every head works on the network output F (n, d) and the canonical targets T (n, d) (labels already
one-hot, see ``pyhessk.mlp``) and provides:

- ``head(F, T)`` → (ℓ per sample (n,), ∂ℓ/∂f (n, d), aux), aux being what H_out needs;
- ``hout_apply(aux, R)`` → H_out·R for R of shape (n, k, d), never forming the d × d matrices;
- ``hout_factor(aux, F)`` → Cᵀ (n, d, d) with H_out = C Cᵀ per sample (SPEC §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
from scipy import special

Array = np.ndarray


@dataclass(frozen=True)
class LossHead:
    head: Callable[[Array, Array], tuple[Array, Array, Array | None]]
    hout_apply: Callable[[Array | None, Array], Array]
    hout_factor: Callable[[Array | None, Array], Array]


def _mse_head(F: Array, T: Array) -> tuple[Array, Array, None]:
    E = F - T
    return 0.5 * np.einsum("ij,ij->i", E, E), E, None


def _identity_factor(aux: None, F: Array) -> Array:
    n, d = F.shape
    out = np.zeros((n, d, d), dtype=F.dtype)
    out[:, np.arange(d), np.arange(d)] = 1
    return out


def _softmax_head(F: Array, T: Array) -> tuple[Array, Array, Array]:
    m = F.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(F - m).sum(axis=1, keepdims=True))
    p = np.exp(F - lse)
    ell = lse[:, 0] - np.einsum("ij,ij->i", T, F)
    return ell, p - T, p


def _softmax_hout(p: Array, R: Array) -> Array:
    # p ⊙ (r − pᵀr) with r − pᵀr = r − r_a + Σ_j p_j (r_a − r_j) for the most probable class a (Σ p = 1):
    # r_a − pᵀr itself cancels once p_a rounds to 1, losing the 1 − p_a that is H_out's whole a-th row.
    a = p.argmax(axis=1)
    D = R - R[np.arange(R.shape[0]), :, a][:, :, None]  # r − r_a: (n, k, d)
    return p[:, None, :] * (D - np.einsum("nkd,nd->nk", D, p)[:, :, None])


def _softmax_factor(p: Array, F: Array) -> Array:
    # Cᵀ = diag(√p) − √p pᵀ, so that C Cᵀ = diag(p) − p pᵀ because Σ p = 1.
    sp = np.sqrt(p)
    out = -sp[:, :, None] * p[:, None, :]
    d = p.shape[1]
    out[:, np.arange(d), np.arange(d)] += sp
    return out


def _sigmoid_head(F: Array, T: Array) -> tuple[Array, Array, Array]:
    p = special.expit(F)
    h = p * special.expit(-F)  # σ(f)σ(−f): no cancellation in σ(1 − σ)
    ell = (np.logaddexp(F.dtype.type(0), F) - T * F).sum(axis=1)
    return ell, p - T, h


def _diag_factor(h: Array, F: Array) -> Array:
    n, d = h.shape
    out = np.zeros((n, d, d), dtype=h.dtype)
    out[:, np.arange(d), np.arange(d)] = np.sqrt(h)
    return out


LOSSES: dict[str, LossHead] = {
    "mse": LossHead(_mse_head, lambda aux, R: R, _identity_factor),
    "softmax_cross_entropy": LossHead(_softmax_head, _softmax_hout, _softmax_factor),
    "sigmoid_cross_entropy": LossHead(_sigmoid_head, lambda h, R: h[:, None, :] * R, _diag_factor),
}
