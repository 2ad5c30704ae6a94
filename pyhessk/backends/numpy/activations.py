"""The NumPy engine's one table of activations: name → (φ, (φ′, φ″)), vectorized.

Each row gives ``f(z)`` for the forward pass and ``derivs(z, a)`` returning (φ′(z), φ″(z)) given
a = φ(z), so the linearization reuses the forward's transcendental work.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
from scipy import special

from ... import _spec

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    f: Callable[[Array], Array]
    derivs: Callable[[Array, Array], tuple[Array, Array]]


def _tanh_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    d1 = 1 - a * a
    return d1, -2 * a * d1


def _sigmoid_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    d1 = a * special.expit(-z)  # σ(z)σ(−z) avoids the cancellation in σ(1−σ)
    return d1, d1 * (1 - 2 * a)


def _softplus_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    s = special.expit(z)
    return s, s * special.expit(-z)


_SQRT_2 = np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _gelu(z: Array) -> Array:
    return z * special.ndtr(z)


def _gelu_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    pdf = (_INV_SQRT_2PI * np.exp(-0.5 * z * z)).astype(z.dtype, copy=False)
    return special.ndtr(z) + z * pdf, pdf * (2 - z * z)


def _silu_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    s = special.expit(z)
    sm = special.expit(-z)
    return s * (1 + z * sm), s * sm * (2 + z * (sm - s))


def _relu_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    return (z > 0).astype(z.dtype), np.zeros_like(z)


_SLOPE = _spec.LEAKY_RELU_SLOPE


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, z * z.dtype.type(_SLOPE))


def _leaky_relu_derivs(z: Array, a: Array) -> tuple[Array, Array]:
    return np.where(z > 0, z.dtype.type(1), z.dtype.type(_SLOPE)), np.zeros_like(z)


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(lambda z: z, lambda z, a: (np.ones_like(z), np.zeros_like(z))),
    "tanh": Activation(np.tanh, _tanh_derivs),
    "sigmoid": Activation(special.expit, _sigmoid_derivs),
    "relu": Activation(lambda z: np.maximum(z, 0), _relu_derivs),
    "leaky_relu": Activation(_leaky_relu, _leaky_relu_derivs),
    "softplus": Activation(lambda z: np.logaddexp(z.dtype.type(0), z), _softplus_derivs),
    "gelu": Activation(_gelu, _gelu_derivs),
    "silu": Activation(lambda z: z * special.expit(z), _silu_derivs),
    "sin": Activation(np.sin, lambda z, a: (np.cos(z), -a)),
}
