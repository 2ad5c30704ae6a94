"""The Numba engine's one table of activations: scalar compiled φ, and (φ, φ′, φ″) per activation.

Conventions are the NumPy engine's (SPEC §1): relu′(0) = 0, leaky_relu slope 0.01 (and leaky′(0) = 0.01),
gelu in its exact erf form, φ″ = 0 for the piecewise-linear activations. Every function takes a float32
or float64 scalar and computes in that type (constants go through ``_c``, so float32 loops stay float32).

Kernels never branch per element on the activation: ``sweep_values`` and ``sweep_derivatives`` select a
row of ``ACTIVATIONS`` by its registry id once per layer, and each branch is its own vectorized loop. The
exponential family is built on ``exp``/``expm1`` below, written in plain arithmetic so that those loops
vectorize (``math.exp`` and ``math.tanh`` are scalar libm calls, 10-40× slower per element); their error
is within 2 ulp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ... import _spec
from ._jit import jit


@intrinsic
def _pow2(typingctx: Any, k: Any) -> Any:
    """2**k for an integer-valued float k in the normal range of its type, from the exponent bits.

    Plain LLVM (convert, shift, bitcast), so loops that use it vectorize, unlike a libm ``ldexp`` call.
    """
    if k not in (types.float32, types.float64):
        return None
    f32 = k == types.float32
    bias, shift = (127, 23) if f32 else (1023, 52)
    ity, fty = (ir.IntType(32), ir.FloatType()) if f32 else (ir.IntType(64), ir.DoubleType())

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        e = builder.add(builder.fptosi(args[0], ity), ir.Constant(ity, bias))
        return builder.bitcast(builder.shl(e, ir.Constant(ity, shift)), fty)

    return k(k), codegen


def _c(x: float, value: float) -> float:
    """``value`` in the type of ``x`` (a float literal alone would promote float32 arithmetic to float64).

    Compiled code uses the overload below; this body serves calls from Python.
    """
    return np.float32(value) if isinstance(x, np.float32) else np.float64(value)


@overload(_c, jit_options={"cache": True})
def _ol_c(x, value):  # noqa: ANN001, ANN202 - numba matches the implementation's signature to this one
    if x == types.float32:
        return lambda x, value: np.float32(value)
    return lambda x, value: np.float64(value)


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that k·_LN2_HI is exact for |k| < 2^20
_LN2_LO = 1.90821492927058770002e-10
_LN2_HI32 = 0.693145751953125  # the float32 split: k·_LN2_HI32 is exact for |k| < 2^9
_LN2_LO32 = 1.428606765330187e-06
_ROUND32 = 12582912.0  # 1.5·2^23: y + _ROUND32 − _ROUND32 rounds a float32 |y| < 2^22 to an integer
# 1/j! for j = 2 .. 13: the Taylor polynomial of expm1 on |r| ≤ ln2/2 has a remainder below 1e-17 (float64);
# the float32 polynomial stops at j = 8 (remainder below 5e-9).
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (1.0 / math.factorial(j) for j in range(2, 14))
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SLOPE = _spec.LEAKY_RELU_SLOPE


@jit
def _reduce64(x: float) -> tuple[float, float]:
    """(2**k, expm1(r)) with x = k·ln2 + r, |r| ≤ ln2/2 (float64; 2**k as two normal powers of two)."""
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
    k1 = math.floor(k * 0.5)
    t = _pow2(float(k1)) * _pow2(float(k - k1))
    return t, r + r * r * p


@jit
def _reduce32(x: Any) -> tuple[Any, Any]:
    """The float32 ``_reduce64``: 8-wide vectors and a degree-8 polynomial."""
    x = min(max(x, np.float32(-104.0)), np.float32(89.0))
    # round to nearest by the 1.5·2^23 shift (IEEE, no fastmath): a libm floor call would not vectorize
    kf = (x * np.float32(_LOG2E) + np.float32(_ROUND32)) - np.float32(_ROUND32)
    r = (x - kf * np.float32(_LN2_HI32)) - kf * np.float32(_LN2_LO32)
    p = np.float32(_C7) + r * np.float32(_C8)
    p = np.float32(_C6) + r * p
    p = np.float32(_C5) + r * p
    p = np.float32(_C4) + r * p
    p = np.float32(_C3) + r * p
    p = np.float32(_C2) + r * p
    k1 = (kf * np.float32(0.5) + np.float32(_ROUND32)) - np.float32(_ROUND32)
    t = _pow2(k1) * _pow2(kf - k1)
    return t, r + r * r * p


def _reduce(x: float) -> tuple[float, float]:
    """The exponent reduction of ``x`` in its own precision (compiled code uses the overload below)."""
    return _reduce32(x) if isinstance(x, np.float32) else _reduce64(x)


@overload(_reduce, jit_options={"cache": True})
def _ol_reduce(x):  # noqa: ANN001, ANN202
    if x == types.float32:
        return lambda x: _reduce32(x)
    return lambda x: _reduce64(x)


@jit
def exp(x: float) -> float:
    """e**x in the type of x (0 / Inf beyond the range of the type); within 2 ulp."""
    t, q = _reduce(x)
    return (_c(x, 1.0) + q) * t


@jit
def expm1(x: float) -> float:
    """e**x − 1 without cancellation near 0, in the type of x."""
    t, q = _reduce(x)
    return t * q + (t - _c(x, 1.0))


@jit
def log1p_unit(u: float) -> float:
    """log(1 + u) for 0 ≤ u ≤ 1: 2·atanh(u / (2 + u)) by its series in t = u/(2+u) ≤ 1/3."""
    t = u / (_c(u, 2.0) + u)
    t2 = t * t
    p = _c(u, 1.0 / 37.0)
    for j in range(17, -1, -1):
        p = _c(u, 1.0 / (2 * j + 1)) + t2 * p
    return _c(u, 2.0) * t * p


@jit
def _logistic_parts(x: float) -> tuple[float, float, float]:
    """(σ(x), σ(−x), e^{−|x|}) without cancellation."""
    e = exp(-abs(x))
    inv = _c(x, 1.0) / (_c(x, 1.0) + e)
    if x >= 0:
        return inv, e * inv, e
    return e * inv, inv, e


# ---- the rows: φ(z) and (φ, φ′, φ″)(z), in the type of z ---------------------------------------------------
@jit
def identity(z: float) -> float:
    return z


@jit
def identity_all(z: float) -> tuple[float, float, float]:
    return z, _c(z, 1.0), _c(z, 0.0)


@jit
def tanh(z: float) -> float:
    em = expm1(_c(z, -2.0) * abs(z))
    return math.copysign(-em / (_c(z, 2.0) + em), z)


@jit
def tanh_all(z: float) -> tuple[float, float, float]:
    a = tanh(z)
    d1 = _c(z, 1.0) - a * a
    return a, d1, _c(z, -2.0) * a * d1


@jit
def sigmoid(z: float) -> float:
    return _logistic_parts(z)[0]


@jit
def sigmoid_all(z: float) -> tuple[float, float, float]:
    s, sm, _ = _logistic_parts(z)
    d1 = s * sm
    return s, d1, d1 * (_c(z, 1.0) - _c(z, 2.0) * s)


@jit
def relu(z: float) -> float:
    return max(z, _c(z, 0.0))


@jit
def relu_all(z: float) -> tuple[float, float, float]:
    zero = _c(z, 0.0)
    return (z, _c(z, 1.0), zero) if z > 0 else (zero, zero, zero)


@jit
def leaky_relu(z: float) -> float:
    return z if z > 0 else z * _c(z, _SLOPE)


@jit
def leaky_relu_all(z: float) -> tuple[float, float, float]:
    zero, slope = _c(z, 0.0), _c(z, _SLOPE)
    return (z, _c(z, 1.0), zero) if z > 0 else (z * slope, slope, zero)


@jit
def softplus(z: float) -> float:
    return max(z, _c(z, 0.0)) + log1p_unit(exp(-abs(z)))


@jit
def softplus_all(z: float) -> tuple[float, float, float]:
    s, sm, e = _logistic_parts(z)
    return max(z, _c(z, 0.0)) + log1p_unit(e), s, s * sm


@jit
def gelu(z: float) -> float:
    return z * _c(z, 0.5) * math.erfc(-z * _c(z, _INV_SQRT2))


@jit
def gelu_all(z: float) -> tuple[float, float, float]:
    cdf = _c(z, 0.5) * math.erfc(-z * _c(z, _INV_SQRT2))
    pdf = _c(z, _INV_SQRT_2PI) * exp(_c(z, -0.5) * z * z)
    return z * cdf, cdf + z * pdf, pdf * (_c(z, 2.0) - z * z)


@jit
def silu(z: float) -> float:
    return z * _logistic_parts(z)[0]


@jit
def silu_all(z: float) -> tuple[float, float, float]:
    s, sm, _ = _logistic_parts(z)
    return z * s, s * (_c(z, 1.0) + z * sm), s * sm * (_c(z, 2.0) + z * (sm - s))


@jit
def sin(z: float) -> float:
    return math.sin(z)


@jit
def sin_all(z: float) -> tuple[float, float, float]:
    a = math.sin(z)
    return a, math.cos(z), -a


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
