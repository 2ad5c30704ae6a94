"""pyhessk: exact second-order information of MLPs (Hessian and Gauss–Newton products, entrywise GNH)."""

from __future__ import annotations

from typing import Any

from . import optim
from ._dispatch import available_backends, show_config
from ._version import __version__
from .bishop import (
    becker_lecun_diagonal,
    check_hessian,
    empirical_fisher_diagonal,
    outer_product,
    outer_product_vectors,
    sherman_morrison,
)
from .curvature import Curvature, GnhEntries
from .hodlr import HodlrMatrix, gnh_hodlr
from .linalg import CGResult, CurvatureOperator, InverseOperator, as_linear_operator, cg, inverse_operator
from .linalg import check_net as _check_net
from .mlp import MLP
from .optim import scipy_problem
from .spectral import diagonal, eigsh, slq, spectral_density, trace


def hvp(net: MLP, theta: Any, X: Any, Y: Any, V: Any) -> Any:
    """One-shot exact Hessian products H V: a linearization followed by one (block) product.

    The backward pass runs inside the product, so an engine may skip what only the gradient needs
    (the C++ engine skips the weight-gradient GEMMs: 8 layer-GEMMs per layer instead of 9)."""
    return _check_net(net)._linearize_forward(theta, X, Y).hvp(V)


def gnvp(net: MLP, theta: Any, X: Any, Y: Any, V: Any) -> Any:
    """One-shot Gauss–Newton products G V; runs the forward pass only (no gradient backward pass)."""
    return _check_net(net)._linearize_forward(theta, X, Y).gnvp(V)


__all__ = [
    "MLP",
    "CGResult",
    "Curvature",
    "CurvatureOperator",
    "GnhEntries",
    "HodlrMatrix",
    "InverseOperator",
    "__version__",
    "as_linear_operator",
    "available_backends",
    "becker_lecun_diagonal",
    "cg",
    "check_hessian",
    "diagonal",
    "eigsh",
    "empirical_fisher_diagonal",
    "gnh_hodlr",
    "gnvp",
    "hvp",
    "inverse_operator",
    "optim",
    "outer_product",
    "outer_product_vectors",
    "scipy_problem",
    "sherman_morrison",
    "show_config",
    "slq",
    "spectral_density",
    "trace",
]
