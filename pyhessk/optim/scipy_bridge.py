"""``scipy_problem``: the objective, its gradient and curvature products in the form ``scipy.optimize.minimize`` takes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._arrays import is_gpu_array
from ..linalg import check_kind, check_net

if TYPE_CHECKING:
    from ..mlp import MLP


def scipy_problem(net: MLP, X: Any, Y: Any, kind: str = "hessian") -> dict[str, Any]:
    """``fun``, ``jac`` and ``hessp`` of L(θ) on the batch (X, Y), for ``scipy.optimize.minimize(**problem, x0=θ)``.

    ``hessp(θ, p)`` is the exact H p (``kind="hessian"``, for Newton-CG, trust-ncg, trust-krylov) or the
    Gauss–Newton G p (``kind="gnh"``: positive semi-definite, so every CG-based method stays well posed).
    The three share one ``linearize`` per distinct θ: the snapshots of the two most recently used points
    are cached, so that SciPy can evaluate a trial point, reject it and go on asking about the current
    iterate without a new linearization (each snapshot holds the batch's forward pass). The problem is a snapshot of the batch: X and Y are copied here (floating
    ones in float64, which SciPy works in), so later changes to the caller's arrays do not change it; build
    a new problem for new data.

    Example:
        >>> import numpy as np, scipy.optimize, pyhessk as hk
        >>> rng = np.random.default_rng(0)
        >>> X, Y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
        >>> net = hk.MLP([3, 1], loss="mse", backend="numpy")
        >>> res = scipy.optimize.minimize(**hk.scipy_problem(net, X, Y), x0=net.init(seed=0), method="trust-ncg",
        ...                               options={"gtol": 1e-10})
        >>> bool(res.success and np.linalg.norm(net.grad(res.x, X, Y)) < 1e-8)
        True

    Returns:
        A dict with keys "fun", "jac" and "hessp".
    """
    net = check_net(net)
    kind = check_kind(kind)
    X, Y = _snapshot(X), _snapshot(Y)
    net._batch(np.zeros(net.num_params), X, Y, net._engine_for(X=X, Y=Y))  # bad data fails here, not in SciPy
    cache: list[tuple[np.ndarray, Any]] = []  # (θ, its snapshot), the most recently used first; two at most

    def snapshot(x: np.ndarray) -> Any:
        x = np.asarray(x, dtype=np.float64)
        for i, (seen, c) in enumerate(cache):
            if np.array_equal(seen, x):
                cache.insert(0, cache.pop(i))
                return c
        c = net.linearize(x, X, Y)
        cache.insert(0, (x.copy(), c))
        del cache[2:]
        return c

    def fun(x: np.ndarray) -> float:
        return snapshot(x).loss

    def jac(x: np.ndarray) -> np.ndarray:
        return snapshot(x).grad

    def hessp(x: np.ndarray, p: np.ndarray) -> np.ndarray:
        c = snapshot(x)
        p = np.asarray(p, dtype=np.float64)
        return c.hvp(p) if kind == "hessian" else c.gnvp(p)

    return {"fun": fun, "jac": jac, "hessp": hessp}


def _snapshot(a: Any) -> Any:
    """A copy of ``a`` (on its device), floating dtypes raised to float64 (integer labels keep theirs)."""
    arr = a if is_gpu_array(a) else np.asarray(a)
    return arr.astype(np.float64 if arr.dtype.kind == "f" else arr.dtype, copy=True)
