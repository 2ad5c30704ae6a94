"""The Numba engine's one table of activations: scalar compiled φ, and (φ, φ′, φ″) per activation.

Conventions are the NumPy engine's (SPEC §1): relu′(0) = 0, leaky_relu slope 0.01 (and leaky′(0) = 0.01),
gelu in its exact erf form, φ″ = 0 for the piecewise-linear activations. Every function takes a float32
or float64 scalar and computes in float64 (the caller stores in its working dtype).

Kernels never branch per element on the activation: ``value(act, z)`` and ``evaluate(act, z)`` select a
row of ``ACTIVATIONS`` by its registry id, and since ``act`` is the same for a whole layer LLVM moves the
selection out of the element loop (one vectorized loop per activation). The exponential family is built
on ``exp``/``expm1`` below, written in plain arithmetic so that those loops vectorize (``math.exp`` and
``math.tanh`` are scalar libm calls, 10-40× slower per element); their error is within 2 ulp in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ... import _spec
from ._jit import jit


@intrinsic
def _f64_from_bits(typingctx: Any, bits: Any) -> Any:
    """Reinterpret an int64 bit pattern as a float64 (vectorizable, unlike a libm ``ldexp`` call)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k·_LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
# 1/j! for j = 2 .. 13: the Taylor polynomial of expm1 on |r| ≤ ln2/2 has a remainder below 1e-17
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(j) for j in range(2, 14))
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SLOPE = _spec.LEAKY_RELU_SLOPE


@jit
def _scale2(k: int) -> float:
    """2**k for -1076 ≤ k ≤ 1024, as a product of two normal powers of two."""
    k1 = k >> 1
    return _f64_from_bits((k1 + 1023) << 52) * _f64_from_bits((k - k1 + 1023) << 52)


@jit
def _reduce(x: float) -> tuple[int, float, float]:
    """x = k·ln2 + r with |r| ≤ ln2/2; returns (k, r, expm1(r))."""
    x = min(max(x, -746.0), 710.0)
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _C12 + r * _C13
    p = _C11 + r * p
    p = _C10 + r * p
    p = _C9 + r * p
    p = _C8 + r * p
    p = _C7 + r * p
    p = _C6 + r * p
    p = _C5 + r * p
    p = _C4 + r * p
    p = _C3 + r * p
    p = _C2 + r * p
    return k, r, r + r * r * p


@jit
def exp(x: float) -> float:
    """e**x (0 below −746, Inf above 710)."""
    k, _, q = _reduce(x)
    return (1.0 + q) * _scale2(k)


@jit
def expm1(x: float) -> float:
    """e**x − 1 without cancellation near 0."""
    k, _, q = _reduce(x)
    t = _scale2(k)
    return t * q + (t - 1.0)


@jit
def log1p_unit(u: float) -> float:
    """log(1 + u) for 0 ≤ u ≤ 1: 2·atanh(u / (2 + u)) by its series in t = u/(2+u) ≤ 1/3."""
    t = u / (2.0 + u)
    t2 = t * t
    p = 1.0 / 37.0
    for j in range(17, -1, -1):
        p = 1.0 / (2 * j + 1) + t2 * p
    return 2.0 * t * p


@jit
def _logistic_parts(x: float) -> tuple[float, float, float]:
    """(σ(x), σ(−x), e^{−|x|}) without cancellation."""
    e = exp(-abs(x))
    inv = 1.0 / (1.0 + e)
    if x >= 0:
        return inv, e * inv, e
    return e * inv, inv, e


# ---- the rows: φ(z) and (φ, φ′, φ″)(z) -------------------------------------------------------------------
@jit
def identity(z: float) -> float:
    return float(z)


@jit
def identity_all(z: float) -> tuple[float, float, float]:
    return float(z), 1.0, 0.0


@jit
def tanh(z: float) -> float:
    x = float(z)
    em = expm1(-2.0 * abs(x))
    return math.copysign(-em / (2.0 + em), x)


@jit
def tanh_all(z: float) -> tuple[float, float, float]:
    a = tanh(z)
    d1 = 1.0 - a * a
    return a, d1, -2.0 * a * d1


@jit
def sigmoid(z: float) -> float:
    return _logistic_parts(float(z))[0]


@jit
def sigmoid_all(z: float) -> tuple[float, float, float]:
    s, sm, _ = _logistic_parts(float(z))
    d1 = s * sm
    return s, d1, d1 * (1.0 - 2.0 * s)


@jit
def relu(z: float) -> float:
    return max(float(z), 0.0)


@jit
def relu_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    return (x, 1.0, 0.0) if x > 0 else (0.0, 0.0, 0.0)


@jit
def leaky_relu(z: float) -> float:
    x = float(z)
    return x if x > 0 else x * _SLOPE


@jit
def leaky_relu_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    return (x, 1.0, 0.0) if x > 0 else (x * _SLOPE, _SLOPE, 0.0)


@jit
def softplus(z: float) -> float:
    x = float(z)
    return max(x, 0.0) + log1p_unit(exp(-abs(x)))


@jit
def softplus_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    s, sm, e = _logistic_parts(x)
    return max(x, 0.0) + log1p_unit(e), s, s * sm


@jit
def gelu(z: float) -> float:
    x = float(z)
    return x * 0.5 * math.erfc(-x * _INV_SQRT2)


@jit
def gelu_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    cdf = 0.5 * math.erfc(-x * _INV_SQRT2)
    pdf = _INV_SQRT_2PI * exp(-0.5 * x * x)
    return x * cdf, cdf + x * pdf, pdf * (2.0 - x * x)


@jit
def silu(z: float) -> float:
    x = float(z)
    return x * _logistic_parts(x)[0]


@jit
def silu_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    s, sm, _ = _logistic_parts(x)
    return x * s, s * (1.0 + x * sm), s * sm * (2.0 + x * (sm - s))


@jit
def sin(z: float) -> float:
    return math.sin(float(z))


@jit
def sin_all(z: float) -> tuple[float, float, float]:
    x = float(z)
    a = math.sin(x)
    return a, math.cos(x), -a


@dataclass(frozen=True)
class Activation:
    """One row: the registry id, φ, and (φ, φ′, φ″) — both compiled scalar functions."""

    id: int
    value: Any
    evaluate: Any


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(_spec.ACTIVATION_BY_NAME["identity"].id, identity, identity_all),
    "tanh": Activation(_spec.ACTIVATION_BY_NAME["tanh"].id, tanh, tanh_all),
    "sigmoid": Activation(_spec.ACTIVATION_BY_NAME["sigmoid"].id, sigmoid, sigmoid_all),
    "relu": Activation(_spec.ACTIVATION_BY_NAME["relu"].id, relu, relu_all),
    "leaky_relu": Activation(_spec.ACTIVATION_BY_NAME["leaky_relu"].id, leaky_relu, leaky_relu_all),
    "softplus": Activation(_spec.ACTIVATION_BY_NAME["softplus"].id, softplus, softplus_all),
    "gelu": Activation(_spec.ACTIVATION_BY_NAME["gelu"].id, gelu, gelu_all),
    "silu": Activation(_spec.ACTIVATION_BY_NAME["silu"].id, silu, silu_all),
    "sin": Activation(_spec.ACTIVATION_BY_NAME["sin"].id, sin, sin_all),
}

# Registry ids as compile-time constants of the selector below.
_IDENTITY, _TANH, _SIGMOID, _RELU, _LEAKY, _SOFTPLUS, _GELU, _SILU, _SIN = (
    ACTIVATIONS[k].id for k in ("identity", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "gelu", "silu", "sin"))

FIRST, SECOND = 1, 2  # what a linearization keeps of a hidden layer: φ′ only (φ″ ≡ 0), or φ′ and φ″


@jit(inline=True)
def _values(Z: Any, b: Any, value: Any) -> None:
    n, m = Z.shape
    for s in range(n):
        for i in range(m):
            Z[s, i] = value(Z[s, i] + b[i])


@jit(inline=True)
def _first(Z: Any, b: Any, D1: Any, evaluate: Any) -> None:
    n, m = Z.shape
    for s in range(n):
        for i in range(m):
            a, d1, _ = evaluate(Z[s, i] + b[i])
            Z[s, i] = a
            D1[s, i] = d1


@jit(inline=True)
def _second(Z: Any, b: Any, D1: Any, D2: Any, evaluate: Any) -> None:
    n, m = Z.shape
    for s in range(n):
        for i in range(m):
            a, d1, d2 = evaluate(Z[s, i] + b[i])
            Z[s, i] = a
            D1[s, i] = d1
            D2[s, i] = d2


# The two selectors below are the only places that map registry ids to rows. Each is inlined into exactly
# one kernel, where every branch becomes its own vectorized loop over a row of ACTIVATIONS; ``act`` is the
# same for a whole layer, so the selection happens once per layer, never per element.
@jit(inline=True)
def sweep_values(act: int, Z: Any, b: Any) -> None:
    """Z ← φ(Z + b) in place (n, m): the forward pass of one layer."""
    if act == _TANH:
        _values(Z, b, tanh)
    elif act == _SIGMOID:
        _values(Z, b, sigmoid)
    elif act == _RELU:
        _values(Z, b, relu)
    elif act == _LEAKY:
        _values(Z, b, leaky_relu)
    elif act == _SOFTPLUS:
        _values(Z, b, softplus)
    elif act == _GELU:
        _values(Z, b, gelu)
    elif act == _SILU:
        _values(Z, b, silu)
    elif act == _SIN:
        _values(Z, b, sin)
    else:
        _values(Z, b, identity)


@jit(inline=True)
def sweep_derivatives(act: int, Z: Any, b: Any, D1: Any, D2: Any) -> None:
    """Z ← φ(Z + b) in place, D1 ← φ′(Z + b) and, unless φ″ ≡ 0 (``_spec`` ``d2_zero``), D2 ← φ″(Z + b).

    One fused pass over the layer (n, m); D2 is left untouched for identity, relu and leaky_relu.
    """
    if act == _TANH:
        _second(Z, b, D1, D2, tanh_all)
    elif act == _SIGMOID:
        _second(Z, b, D1, D2, sigmoid_all)
    elif act == _RELU:
        _first(Z, b, D1, relu_all)
    elif act == _LEAKY:
        _first(Z, b, D1, leaky_relu_all)
    elif act == _SOFTPLUS:
        _second(Z, b, D1, D2, softplus_all)
    elif act == _GELU:
        _second(Z, b, D1, D2, gelu_all)
    elif act == _SILU:
        _second(Z, b, D1, D2, silu_all)
    elif act == _SIN:
        _second(Z, b, D1, D2, sin_all)
    else:
        _first(Z, b, D1, identity_all)
