"""The one compilation policy of the Numba engine.

Every compiled function of the engine is made by ``jit``: ``cache=True`` (compiled code is written next to
the sources, so a second process loads it instead of compiling), ``nogil=True`` (the GIL is released for
the whole call, so several Python threads run products at once), ``fastmath=False`` (IEEE semantics:
float64 results agree with the NumPy engine to rounding) and ``error_model="numpy"`` (a division by zero
gives Inf/NaN as in NumPy instead of raising, which also lets loops vectorize). ``parallel=True`` is
reserved for named outer loops (``jit(parallel=True)``); the engine has none today: its products spend
their time in BLAS, which brings its own threads.

Decorating compiles nothing: a function is compiled on its first call (or loaded from the cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

POLICY: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


def jit(fn: Callable | None = None, *, parallel: bool = False, inline: bool = False) -> Any:
    """``numba.njit`` with the engine's policy.

    ``parallel=True`` only for a named outer ``prange`` loop. ``inline=True`` marks a loop template that
    takes compiled scalar functions as arguments: it is inlined where it is called with concrete ones,
    so each call site becomes its own specialized (and cacheable) loop; or a small helper called in a hot
    loop (a call between compiled functions is not inlined otherwise, so the loop would pay a call per
    iteration).
    """
    options = dict(POLICY, parallel=parallel)
    if inline:
        options["inline"] = "always"
    if fn is None:
        return lambda f: numba.njit(**options)(f)
    return numba.njit(**options)(fn)
