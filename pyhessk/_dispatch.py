"""The engine registry: lazy probes with reasons, and the resolution of ``backend="auto"``.

An engine is a subpackage of ``pyhessk.backends`` exposing ``BACKEND``. Each probe runs once, on first
use, and records why an engine cannot run. The environment variable ``PYHESSK_DISABLE`` (a comma list of
engine names) disables engines, so CI can exercise the fallbacks; it is read by the probe, never at import.
"""

from __future__ import annotations

import importlib
import os
import threading

ENGINES: tuple[str, ...] = ("cuda", "cpp", "numba", "numpy")
AUTO_ORDER_CPU: tuple[str, ...] = ("cpp", "numba", "numpy")

_lock = threading.Lock()
_probes: dict[str, tuple[object | None, str]] = {}


def _run_probe(name: str) -> tuple[object | None, str]:
    disabled = {s.strip() for s in os.environ.get("PYHESSK_DISABLE", "").split(",") if s.strip()}
    if name in disabled:
        return None, f"disabled by PYHESSK_DISABLE={os.environ['PYHESSK_DISABLE']}"
    try:
        module = importlib.import_module(f"pyhessk.backends.{name}")
    except ImportError as exc:
        return None, f"not available in this installation ({exc})"
    backend = getattr(module, "BACKEND", None)
    if backend is None:
        return None, getattr(module, "UNAVAILABLE_REASON", "the engine module exposes no BACKEND")
    return backend, getattr(module, "DESCRIPTION", "ok")


def probe(name: str) -> tuple[object | None, str]:
    """(engine or None, reason) for an engine name; cached after the first call."""
    with _lock:
        if name not in _probes:
            _probes[name] = _run_probe(name)
        return _probes[name]


def available_backends() -> list[str]:
    """The engines that can run here, fastest first for CPU arrays (e.g. ``["cpp", "numba", "numpy"]``)."""
    return [name for name in (*ENGINES[:1], *AUTO_ORDER_CPU) if probe(name)[0] is not None]


def get(name: object) -> object:
    """The engine called ``name`` (or the best CPU engine for "auto"); ``RuntimeError`` saying why it cannot run.

    An engine object (e.g. ``pyhessk.backends.cuda.make_engine(allow_tf32=True)``) is accepted as it is.
    """
    from .backends._base import BackendBase

    if isinstance(name, BackendBase) and isinstance(getattr(name, "name", None), str):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key == "auto":
        for candidate in AUTO_ORDER_CPU:
            engine = probe(candidate)[0]
            if engine is not None:
                return engine
        raise RuntimeError("no pyhessk engine can run: " + "; ".join(f"{e}: {probe(e)[1]}" for e in AUTO_ORDER_CPU))
    if key not in ENGINES:
        raise ValueError(f"backend: unknown engine {name!r}; expected 'auto' or one of {list(ENGINES)}")
    engine, reason = probe(key)
    if engine is None:
        raise RuntimeError(f"backend {key!r} cannot run: {reason}")
    return engine


def gpu_engine() -> object:
    """The engine for GPU arrays under ``backend="auto"``; ``RuntimeError`` saying why there is none."""
    engine, reason = probe("cuda")
    if engine is None:
        raise RuntimeError(f"the inputs are GPU arrays but the 'cuda' engine cannot run: {reason}")
    return engine


def _blas_lines() -> list[str]:
    """NumPy's BLAS, which every CPU engine's GEMMs call, and the hint about its kernels if there is one."""
    from ._blasinfo import blas_report, describe

    try:
        info = blas_report()
    except Exception as exc:  # noqa: BLE001 - a report must not fail on an unusual BLAS
        return [f"  BLAS   unknown ({type(exc).__name__}: {exc})"]
    lines = [f"  BLAS   {describe(info)}; NumPy's, shared by the CPU engines"]
    if info["hint"]:
        lines.append(f"  hint: {info['hint']}")
    return lines


def show_config() -> str:
    """A report of every engine's probe and of NumPy's BLAS (with a hint when its kernels are slower than
    the CPU allows); printed and returned."""
    from ._version import __version__

    lines = [f"pyhessk {__version__}"]
    for name in ENGINES:
        engine, reason = probe(name)
        lines.append(f"  {name:6s} {'available' if engine is not None else 'unavailable'}: {reason}")
    auto = next((e for e in AUTO_ORDER_CPU if probe(e)[0] is not None), None)
    lines.append(f"  backend='auto' picks {auto!r} for NumPy arrays")
    gpu = probe("cuda")
    lines.append("  backend='auto' picks 'cuda' for GPU arrays" if gpu[0] is not None
                 else f"  GPU arrays cannot run here: {gpu[1]}")
    lines += _blas_lines()
    text = "\n".join(lines)
    print(text)
    return text
