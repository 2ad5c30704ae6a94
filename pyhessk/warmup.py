"""``warmup``: build the Numba engine's compiled code ahead of its first use.

The Numba engine compiles each of its kernels on first call, once per dtype, and caches the result on disk
(next to the installed package, or in Numba's user-wide cache where that is read-only). A cold first use
takes about 30 s per dtype on two cores. ``warmup()``, or ``python -m pyhessk warmup``, pays that once,
for example while a container image or a cluster environment is built: it runs every operation of the
engine on a tiny problem, in each dtype, so that later processes load every kernel from the cache.
The activations and losses are selected inside the kernels, so one tiny network covers all of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from . import _dispatch
from ._arrays import working_dtype


def warmup(dtypes: Sequence[str] = ("float32", "float64"), verbose: bool = False) -> dict[str, float]:
    """Compile (or load from Numba's disk cache) every kernel of the Numba engine, in each dtype.

    Args:
        dtypes: the dtypes to prepare, "float32" and/or "float64".
        verbose: print one line per dtype.

    Returns:
        Seconds taken per dtype (a few tenths where the cache already held everything).

    Raises:
        RuntimeError: the Numba engine cannot run here (the reason is in the message).
    """
    if isinstance(dtypes, str):
        dtypes = [dtypes]
    chosen = [working_dtype(d, "dtypes").name for d in dtypes]
    engine, reason = _dispatch.probe("numba")
    if engine is None:
        raise RuntimeError(f"the numba engine cannot run here: {reason}")
    seconds = {}
    for name in chosen:
        t0 = time.perf_counter()
        _exercise(name)
        seconds[name] = time.perf_counter() - t0
        if verbose:
            print(f"numba engine, {name}: ready in {seconds[name]:.1f} s")
    return seconds


def _exercise(dtype: str) -> None:
    """Every operation the Numba engine compiles, once, on a tiny network in ``dtype``."""
    from .mlp import MLP

    rng = np.random.default_rng(0)
    net = MLP([3, 4, 3, 2], activation=["tanh", "relu"], loss="softmax_cross_entropy", l2=0.1, backend="numba")
    theta = net.init(seed=0, dtype=dtype)
    X = rng.standard_normal((40, 3)).astype(dtype)
    Y = rng.integers(0, 2, 40)
    N = net.num_params
    V = rng.standard_normal((N, 3)).astype(dtype)
    U = rng.standard_normal((40, 2, 3)).astype(dtype)
    net.forward(theta, X)
    net.loss(theta, X, Y)
    c = net.linearize(theta, X, Y)
    for W in (V, V[:, 0]):
        c.hvp(W), c.gnvp(W), c.jvp(W)
    c.vjp(U), c.vjp(U[:, :, 0])
    for method in ("assemble", "products"):
        c.hessian(method=method), c.gnh(method=method)
    c.empirical_fisher_diagonal()
    e = c.gnh_entries()
    idx = np.arange(N)
    e.entries(idx, idx[::-1]), e.block(idx[:5], idx[-4:]), e.column(idx[[0, N - 1]]), e.diagonal()
    for method in ("mean", "median_of_means"):
        e.estimate(idx[:6], idx[-6:], eps=0.9, delta=0.2, method=method, allow_exact=False)
    L = len(net.sizes) - 1
    for carry in (None, (True,) * (L - 1) + (False,)):
        for W in (V, V[:, :1]):
            c._engine.gnh_gnvp(e._fac, W, carry)
    e.gnvp(V), e.gnvp(V[:, 0])
    c.gnh_solve(V, 1.0)
    net._linearize_forward(theta, X, Y).gnvp(V)
