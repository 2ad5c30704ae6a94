"""pyhessk: exact second-order information of MLPs (Hessian and Gauss–Newton products, entrywise GNH)."""

from __future__ import annotations

from typing import Any

from ._dispatch import available_backends, show_config
from ._version import __version__
from .curvature import Curvature, GnhEntries
from .mlp import MLP


def hvp(net: MLP, theta: Any, X: Any, Y: Any, V: Any) -> Any:
    """One-shot exact Hessian products H V: a linearization followed by one (block) product."""
    return net.linearize(theta, X, Y).hvp(V)


def gnvp(net: MLP, theta: Any, X: Any, Y: Any, V: Any) -> Any:
    """One-shot Gauss–Newton products G V; runs the forward pass only (no gradient backward pass)."""
    return net._linearize_forward(theta, X, Y).gnvp(V)


__all__ = [
    "MLP",
    "Curvature",
    "GnhEntries",
    "__version__",
    "available_backends",
    "gnvp",
    "hvp",
    "show_config",
]
