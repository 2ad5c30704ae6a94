"""The Numba engine's one table of loss heads, compiled; the same conventions as the NumPy engine.

Each head works on the network output F (n, d) and the canonical targets T (n, d) and provides:

- ``head(F, T, E, aux, s)`` → Σ_k ℓ_k (float64); writes E = s·∂ℓ/∂f (n, d) and aux, what H_out needs
  (p for softmax, σ(f)σ(−f) for sigmoid, nothing for mse); one pass over the samples;
- ``hout(aux, R, U, s)``: U = s·H_out·R per sample for R, U of shape (n, k, d), never forming H_out;
- ``factor(aux, S)``: S (d, d, n) with S[b, a, k] = Cᵀ_k[a, b], where H_out,k = C_k C_kᵀ (SPEC §3); the
  sample index runs fastest, the layout of the engine's GNH factors.

Rows compute in float64 and store in the working dtype. ``head``, ``hout`` and ``factor`` select a row by
its registry id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import _spec
from ._jit import jit


# ---- mse: ℓ = ½‖f − y‖², H_out = I ----------------------------------------------------------------------
@jit
def mse_head(F: Any, T: Any, E: Any, aux: Any, s: float) -> float:
    n, d = F.shape
    total = 0.0
    for k in range(n):
        acc = 0.0
        for a in range(d):
            e = float(F[k, a]) - float(T[k, a])
            acc += e * e
            E[k, a] = s * e
        total += 0.5 * acc
    return total


@jit
def mse_hout(aux: Any, R: Any, U: Any, s: float) -> None:
    n, kk, d = R.shape
    for k in range(n):
        for j in range(kk):
            for a in range(d):
                U[k, j, a] = s * R[k, j, a]


@jit
def mse_factor(aux: Any, S: Any) -> None:
    d, _, n = S.shape
    for b in range(d):
        for a in range(d):
            for k in range(n):
                S[b, a, k] = 1.0 if a == b else 0.0


# ---- softmax cross-entropy: ℓ = logsumexp(f) − yᵀf, H_out = diag(p) − p pᵀ -----------------------------
@jit
def softmax_head(F: Any, T: Any, E: Any, aux: Any, s: float) -> float:
    n, d = F.shape
    total = 0.0
    for k in range(n):
        m = -math.inf
        for a in range(d):
            m = max(m, float(F[k, a]))
        z = 0.0
        for a in range(d):
            z += math.exp(float(F[k, a]) - m)
        lse = m + math.log(z)
        ty = 0.0
        for a in range(d):
            f = float(F[k, a])
            p = math.exp(f - lse)
            ty += float(T[k, a]) * f
            aux[k, a] = p
            E[k, a] = s * (p - float(T[k, a]))
        total += lse - ty
    return total


@jit
def softmax_hout(aux: Any, R: Any, U: Any, s: float) -> None:
    # p ⊙ (r − pᵀr) with r − pᵀr = r − r_m + Σ_a p_a (r_m − r_a) for the most probable class m (Σ p = 1):
    # r_m − pᵀr itself cancels once p_m rounds to 1, losing the 1 − p_m that is H_out's whole m-th row.
    n, kk, d = R.shape
    for k in range(n):
        m = 0
        for a in range(1, d):
            if aux[k, a] > aux[k, m]:
                m = a
        for j in range(kk):
            rm = float(R[k, j, m])
            t = 0.0
            for a in range(d):
                t += float(aux[k, a]) * (rm - float(R[k, j, a]))
            for a in range(d):
                U[k, j, a] = s * float(aux[k, a]) * (float(R[k, j, a]) - rm + t)


@jit
def softmax_factor(aux: Any, S: Any) -> None:
    # Cᵀ = diag(√p) − √p pᵀ, so that C Cᵀ = diag(p) − p pᵀ because Σ p = 1.
    d, _, n = S.shape
    for b in range(d):
        for a in range(d):
            for k in range(n):
                sa = math.sqrt(float(aux[k, a]))
                S[b, a, k] = (sa if a == b else 0.0) - sa * float(aux[k, b])


# ---- sigmoid cross-entropy: ℓ = Σ softplus(f) − y f, H_out = diag(σ(f)σ(−f)) ---------------------------
@jit
def sigmoid_head(F: Any, T: Any, E: Any, aux: Any, s: float) -> float:
    n, d = F.shape
    total = 0.0
    for k in range(n):
        acc = 0.0
        for a in range(d):
            f = float(F[k, a])
            e = math.exp(-abs(f))
            inv = 1.0 / (1.0 + e)
            p, pm = (inv, e * inv) if f >= 0 else (e * inv, inv)  # σ(f), σ(−f) without cancellation
            acc += max(f, 0.0) + math.log1p(e) - float(T[k, a]) * f
            aux[k, a] = p * pm
            E[k, a] = s * (p - float(T[k, a]))
        total += acc
    return total


@jit
def sigmoid_hout(aux: Any, R: Any, U: Any, s: float) -> None:
    n, kk, d = R.shape
    for k in range(n):
        for j in range(kk):
            for a in range(d):
                U[k, j, a] = s * float(aux[k, a]) * float(R[k, j, a])


@jit
def sigmoid_factor(aux: Any, S: Any) -> None:
    d, _, n = S.shape
    for b in range(d):
        for a in range(d):
            for k in range(n):
                S[b, a, k] = math.sqrt(float(aux[k, a])) if a == b else 0.0


@dataclass(frozen=True)
class LossHead:
    """One row: the registry id and the three compiled functions of the loss."""

    id: int
    head: Any
    hout: Any
    factor: Any


LOSSES: dict[str, LossHead] = {
    "mse": LossHead(_spec.LOSS_BY_NAME["mse"].id, mse_head, mse_hout, mse_factor),
    "softmax_cross_entropy": LossHead(_spec.LOSS_BY_NAME["softmax_cross_entropy"].id, softmax_head,
                                      softmax_hout, softmax_factor),
    "sigmoid_cross_entropy": LossHead(_spec.LOSS_BY_NAME["sigmoid_cross_entropy"].id, sigmoid_head,
                                      sigmoid_hout, sigmoid_factor),
}

_SOFTMAX, _SIGMOID = LOSSES["softmax_cross_entropy"].id, LOSSES["sigmoid_cross_entropy"].id


@jit
def head(loss: int, F: Any, T: Any, E: Any, aux: Any, s: float) -> float:
    """Σ_k ℓ_k; E = s·∂ℓ/∂f and aux for the loss with registry id ``loss``."""
    if loss == _SOFTMAX:
        return softmax_head(F, T, E, aux, s)
    if loss == _SIGMOID:
        return sigmoid_head(F, T, E, aux, s)
    return mse_head(F, T, E, aux, s)


@jit
def hout(loss: int, aux: Any, R: Any, U: Any, s: float) -> None:
    """U = s·H_out·R (n, k, d) for the loss with registry id ``loss``."""
    if loss == _SOFTMAX:
        softmax_hout(aux, R, U, s)
    elif loss == _SIGMOID:
        sigmoid_hout(aux, R, U, s)
    else:
        mse_hout(aux, R, U, s)


@jit
def factor(loss: int, aux: Any, S: Any) -> None:
    """S[b, a, k] = Cᵀ_k[a, b] (d, d, n) for the loss with registry id ``loss``."""
    if loss == _SOFTMAX:
        softmax_factor(aux, S)
    elif loss == _SIGMOID:
        sigmoid_factor(aux, S)
    else:
        mse_factor(aux, S)
