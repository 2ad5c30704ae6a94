"""The one compilation policy of the Numba engine.

Every compiled function of the engine is made by ``jit``: ``cache=True`` (compiled code is written next to
the sources, so a second process loads it instead of compiling), ``nogil=True`` (the GIL is released for
the whole call, so several Python threads run products at once), ``fastmath=False`` (IEEE semantics:
float64 results agree with the NumPy engine to rounding) and ``error_model="numpy"`` (a division by zero
gives Inf/NaN as in NumPy instead of raising, which also lets loops vectorize). ``parallel=True`` is
reserved for named outer loops (``jit(parallel=True)``); the engine has none today: its products spend
their time in BLAS, which brings its own threads.

Decorating compiles nothing: a function is compiled on its first call (or loaded from the cache).

A cached function is reused only while every source the engine compiles is unchanged. Numba's own check
looks at the one file that defines the function, but the engine's loops inline the activations, losses and
helpers of the other files: edit ``activations.py`` and a loop of ``_passes.py`` would go on running the old
activation from its cache. So the engine's functions are cached through locators (``_ENGINE_LOCATORS``,
registered at import) that stamp each entry with one hash over all the engine's sources (``SOURCES``);
changing any of them recompiles every function of the engine. Functions outside the engine are left to
Numba's own locators.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import hashlib
import os
from typing import Any

import numba
import numba.core.caching as _caching

from ... import _version

POLICY: dict[str, Any] = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(os.path.dirname(_ENGINE_DIR))
#: what the engine's compiled code may be made from: its own modules and every pyhessk module they import
#: (paths relative to the package; tests/test_numba_engine.py checks the imports against this list)
SOURCES: tuple[str, ...] = tuple(
    sorted(os.path.relpath(os.path.join(_ENGINE_DIR, f), _PACKAGE_DIR)
           for f in os.listdir(_ENGINE_DIR) if f.endswith(".py"))
) + tuple(os.path.join(*p.split("/")) for p in ("backends/_base.py", "backends/_blas.py", "_spec.py", "_version.py"))


@functools.cache
def _sources_hash(root: str, files: tuple[str, ...]) -> str:
    h = hashlib.sha256(f"pyhessk {_version.__version__} numba {numba.__version__}".encode())
    for rel in files:
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
        h.update(f"\0{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def sources_stamp() -> str:
    """The hash over ``SOURCES`` (and the pyhessk and Numba versions) that every cached entry is stamped with."""
    return _sources_hash(_PACKAGE_DIR, SOURCES)


class _EngineStamp:
    """Mixin for a Numba cache locator: engine files only, stamped with ``sources_stamp()``."""

    def get_source_stamp(self) -> str:
        return sources_stamp()

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if os.path.dirname(os.path.abspath(py_file)) != _ENGINE_DIR:
            return None  # not the engine's: Numba's own locators decide
        return super().from_function(py_func, py_file)  # type: ignore[misc]


def _engine_locators() -> list[type]:
    """The engine's locators, one per Numba locator it replaces, in Numba's order of preference: the
    directory of ``NUMBA_CACHE_DIR`` if set, the ``__pycache__`` beside the sources if writable, else the
    user-wide cache. (Numba 0.60–0.6x name them with or without a leading underscore.)"""
    found = []
    for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator"):
        base = getattr(_caching, name, None) or getattr(_caching, "_" + name, None)
        if base is None:
            raise ImportError(f"numba {numba.__version__} has no cache locator {name}; the numba engine needs "
                              f"numba>=0.60 with its cache locators")
        found.append(type(f"Engine{name}", (_EngineStamp, base), {"__module__": __name__}))
    return found


_ENGINE_LOCATORS = _engine_locators()
_impl = getattr(_caching, "CacheImpl", None) or _caching._CacheImpl
_impl._locator_classes[:] = _ENGINE_LOCATORS + [  # (a reload of this module replaces, never stacks)
    c for c in _impl._locator_classes if c.__module__ != __name__]


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
