"""Oracles that do not use the code under test: an independent float64 implementation of SPEC §1 (its own
parameter unpacking, activations and losses), central finite differences on top of it, and closed-form
output Hessians. Only the registry (names → canonical names) is shared with the library."""

from __future__ import annotations

import math

import numpy as np

from pyhessk import _spec

_erf = np.vectorize(math.erf, otypes=[float])

ACT = {
    "identity": lambda z: z,
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.where(z > 0, z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "softplus": lambda z: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0))),
    "silu": lambda z: z / (1.0 + np.exp(-z)),
    "sin": np.sin,
}


def activations(case) -> list[str]:
    L = len(case.sizes) - 1
    acts = [case.activation] * (L - 1) if isinstance(case.activation, str) else list(case.activation)
    return [_spec.activation(a).name for a in acts]


def unpack(case, theta):
    """[(W_l, b_l or None)] from the flat layout W_1 (row-major), b_1, W_2, ... (SPEC §1)."""
    theta = np.asarray(theta, dtype=np.float64)
    layers, pos = [], 0
    for fan_in, fan_out in zip(case.sizes[:-1], case.sizes[1:]):
        W = theta[pos : pos + fan_in * fan_out].reshape(fan_out, fan_in)
        pos += fan_in * fan_out
        b = None
        if case.bias:
            b = theta[pos : pos + fan_out]
            pos += fan_out
        layers.append((W, b))
    assert pos == theta.size
    return layers


def num_params(case) -> int:
    return sum(o * (i + (1 if case.bias else 0)) for i, o in zip(case.sizes[:-1], case.sizes[1:]))


def weight_mask(case) -> np.ndarray:
    mask = []
    for fan_in, fan_out in zip(case.sizes[:-1], case.sizes[1:]):
        mask += [1.0] * (fan_in * fan_out) + ([0.0] * fan_out if case.bias else [])
    return np.array(mask)


def pre_activations(case, theta, X) -> list[np.ndarray]:
    acts = activations(case)
    A, Zs = np.asarray(X, dtype=np.float64), []
    for l, (W, b) in enumerate(unpack(case, theta)):
        Z = A @ W.T + (0 if b is None else b)
        Zs.append(Z)
        A = ACT[acts[l]](Z) if l < len(acts) else Z
    return Zs


def outputs(case, theta, X) -> np.ndarray:
    return pre_activations(case, theta, X)[-1]


def targets(case, Y, n: int) -> np.ndarray:
    d = case.sizes[-1]
    Y = np.asarray(Y)
    if Y.dtype.kind in "iu" and Y.ndim == 1:
        T = np.zeros((n, d))
        T[np.arange(n), Y] = 1.0
        return T
    return np.asarray(Y, dtype=np.float64).reshape(n, d)


def per_sample_loss(case, F, Y) -> np.ndarray:
    T = targets(case, Y, F.shape[0])
    name = _spec.loss(case.loss).name
    if name == "mse":
        return 0.5 * ((F - T) ** 2).sum(axis=1)
    if name == "softmax_cross_entropy":
        logp = F - F.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        return -(T * logp).sum(axis=1)
    return (np.logaddexp(0.0, F) - T * F).sum(axis=1)


def scale(case, n: int) -> float:
    return 1.0 / n if case.reduction == "mean" else 1.0


def objective(case, theta, X, Y) -> float:
    F = outputs(case, theta, X)
    value = scale(case, F.shape[0]) * per_sample_loss(case, F, Y).sum()
    return value + 0.5 * case.l2 * sum((W**2).sum() for W, _ in unpack(case, theta))


def output_hessians(case, F) -> np.ndarray:
    """H_out,k = ∂²ℓ/∂f² per sample, in closed form: (n, d, d)."""
    n, d = F.shape
    name = _spec.loss(case.loss).name
    if name == "mse":
        return np.broadcast_to(np.eye(d), (n, d, d)).copy()
    if name == "softmax_cross_entropy":
        P = np.exp(F - F.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        return np.stack([np.diag(p) - np.outer(p, p) for p in P])
    S = 1.0 / (1.0 + np.exp(-F))
    return np.stack([np.diag(s * (1 - s)) for s in S])


def fd_gradient(fun, theta, h=1e-6) -> np.ndarray:
    """Central differences of a scalar function."""
    theta = np.asarray(theta, dtype=np.float64)
    g = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (fun(theta + e) - fun(theta - e)) / (2 * h)
    return g


def fd_jacobian(fun, theta, h=1e-6) -> np.ndarray:
    """Central differences of an array-valued function: (*out_shape, N)."""
    theta = np.asarray(theta, dtype=np.float64)
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        cols.append((fun(theta + e) - fun(theta - e)) / (2 * h))
    return np.stack(cols, axis=-1)


def fd_hessian(case, theta, X, Y, h=1e-4) -> np.ndarray:
    """Second central differences of the independent objective: accurate to ~1e-7 relative."""
    theta = np.asarray(theta, dtype=np.float64)
    N = theta.size
    f = lambda t: objective(case, t, X, Y)  # noqa: E731
    H = np.empty((N, N))
    for i in range(N):
        ei = np.zeros(N)
        ei[i] = h
        for j in range(i, N):
            ej = np.zeros(N)
            ej[j] = h
            H[i, j] = H[j, i] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)) / (4 * h * h)
    return H


def jacobians(case, theta, X) -> np.ndarray:
    """J_k = ∂f(x_k)/∂θ by central differences of the independent forward pass: (n, d, N)."""
    return fd_jacobian(lambda t: outputs(case, t, X), theta)


def explicit_gnh(case, theta, X, Y) -> np.ndarray:
    """G = s Σ_k J_kᵀ H_out,k J_k + λ P_W, assembled densely."""
    J = jacobians(case, theta, X)
    F = outputs(case, theta, X)
    Hout = output_hessians(case, F)
    G = scale(case, F.shape[0]) * np.einsum("kdp,kde,keq->pq", J, Hout, J)
    return G + case.l2 * np.diag(weight_mask(case))


def kink_margin(case, theta, X) -> float:
    """Smallest |z| over hidden pre-activations (finite differences near a ReLU kink are meaningless)."""
    Zs = pre_activations(case, theta, X)[:-1]
    return min((np.abs(Z).min() for Z in Zs), default=np.inf)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
