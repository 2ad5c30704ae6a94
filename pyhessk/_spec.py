"""The registry of activations and losses: names, aliases, integer ids and flags.

This is the one list every engine implements. It holds no math: each engine has exactly one table of
φ, φ′, φ″ and one of loss heads, keyed by the canonical names below. The integer ids are part of the
contract with the compiled engines (their enums must carry the same values).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActivationSpec:
    """One hidden-layer activation φ.

    Attributes:
        name: canonical name.
        id: integer id shared with the compiled engines.
        aliases: other accepted names.
        d2_zero: φ″ ≡ 0 (almost everywhere): piecewise-linear activations.
        smooth: φ is C² everywhere, so finite-difference oracles need no care about kinks.
        dphi_at_zero: φ′(0) where the activation has a kink (the autodiff convention), else None.
    """

    name: str
    id: int
    aliases: tuple[str, ...] = ()
    d2_zero: bool = False
    smooth: bool = True
    dphi_at_zero: float | None = None


@dataclass(frozen=True)
class LossSpec:
    """One per-sample loss ℓ(f, y) on the linear network output f.

    Attributes:
        name: canonical name.
        id: integer id shared with the compiled engines.
        aliases: other accepted names.
        targets: the accepted target forms, a subset of {"real", "labels", "probabilities", "unit"}.
    """

    name: str
    id: int
    aliases: tuple[str, ...] = ()
    targets: tuple[str, ...] = field(default_factory=tuple)


LEAKY_RELU_SLOPE = 0.01

ACTIVATIONS: tuple[ActivationSpec, ...] = (
    ActivationSpec("identity", 0, ("linear", "none"), d2_zero=True),
    ActivationSpec("tanh", 1),
    ActivationSpec("sigmoid", 2, ("logistic",)),
    ActivationSpec("relu", 3, d2_zero=True, smooth=False, dphi_at_zero=0.0),
    ActivationSpec("leaky_relu", 4, d2_zero=True, smooth=False, dphi_at_zero=LEAKY_RELU_SLOPE),
    ActivationSpec("softplus", 5),
    ActivationSpec("gelu", 6),
    ActivationSpec("silu", 7, ("swish",)),
    ActivationSpec("sin", 8, ("sine",)),
)

LOSSES: tuple[LossSpec, ...] = (
    LossSpec("mse", 0, ("squared_error",), targets=("real",)),
    LossSpec("softmax_cross_entropy", 1, ("cross_entropy",), targets=("labels", "probabilities")),
    LossSpec("sigmoid_cross_entropy", 2, ("binary_cross_entropy",), targets=("unit",)),
)

REDUCTIONS: tuple[str, ...] = ("mean", "sum")

ACTIVATION_BY_NAME: dict[str, ActivationSpec] = {
    alias: spec for spec in ACTIVATIONS for alias in (spec.name, *spec.aliases)
}
LOSS_BY_NAME: dict[str, LossSpec] = {alias: spec for spec in LOSSES for alias in (spec.name, *spec.aliases)}


def _resolve(kind: str, arg: str, name: object, table: dict) -> object:
    if not isinstance(name, str):
        raise TypeError(f"{arg} must be a string naming a {kind}, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in table:
        raise ValueError(f"{arg}: unknown {kind} {name!r}; expected one of {sorted(table)}")
    return table[key]


def activation(name: object, arg: str = "activation") -> ActivationSpec:
    """Look up an activation by name or alias; raises ``ValueError`` naming ``arg`` if unknown."""
    return _resolve("activation", arg, name, ACTIVATION_BY_NAME)  # type: ignore[return-value]


def loss(name: object, arg: str = "loss") -> LossSpec:
    """Look up a loss by name or alias; raises ``ValueError`` naming ``arg`` if unknown."""
    return _resolve("loss", arg, name, LOSS_BY_NAME)  # type: ignore[return-value]
