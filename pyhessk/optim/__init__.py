"""Second-order optimizers built on the curvature products: Martens' Hessian-free, Levenberg–Marquardt, and
a bridge to ``scipy.optimize.minimize`` (ALGORITHMS §7)."""

from __future__ import annotations

from .hessian_free import HessianFree
from .levenberg_marquardt import LevenbergMarquardt
from .scipy_bridge import scipy_problem

__all__ = ["HessianFree", "LevenbergMarquardt", "scipy_problem"]
