"""The CUDA engine: fused GPU kernels (``csrc/cuda/kernels``) with cuBLAS GEMMs, on CuPy arrays.

Two paths run the same kernels: ``core`` uses ``pyhessk._core_cuda`` (compiled with nvcc at install time,
``PYHESSK_BUILD_CUDA=1``); ``nvrtc`` compiles the kernel headers at first use through CuPy's NVRTC (cached
per dtype and activation/loss). The probe picks ``core`` when it is built, else ``nvrtc``;
``PYHESSK_CUDA_PATH=nvrtc`` or ``=core`` forces one. ``make_engine`` builds an engine explicitly, e.g. with
TF32 GEMMs allowed (off by default: curvature needs float32 accuracy)::

    net = pyhessk.MLP(sizes, backend=pyhessk.backends.cuda.make_engine(allow_tf32=True))
"""

from __future__ import annotations

import os
from typing import Any

from ._engine import CudaEngine

PATHS = ("core", "nvrtc")


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"cupy not installed ({exc}); pip install cupy-cuda13x (or the cupy wheel matching "
                           "your CUDA)") from exc
    return cupy


def gpu_status(cupy: Any) -> tuple[bool, str]:
    """(a GPU is usable, a description or the reason it is not)."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError and driver load failures alike
        return False, f"no GPU visible ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no GPU visible (the CUDA runtime reports 0 devices)"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception as exc:  # noqa: BLE001
        return False, f"the GPU cannot be queried ({type(exc).__name__}: {exc})"
    return True, f"{count} GPU(s), current: {name}"


def core_module() -> tuple[Any | None, str]:
    """(``pyhessk._core_cuda`` or None, why)."""
    try:
        from ... import _core_cuda
    except ImportError as exc:
        return None, f"pyhessk._core_cuda is not built ({exc}); build it with PYHESSK_BUILD_CUDA=1"
    return _core_cuda, "pyhessk._core_cuda is built"


def make_engine(path: str | None = None, allow_tf32: bool = False) -> CudaEngine:
    """A CUDA engine on ``path`` ("core", "nvrtc" or None for the best available); ``RuntimeError`` saying
    why it cannot run here."""
    if path is not None and path not in PATHS:
        raise ValueError(f"path must be one of {list(PATHS)} or None, got {path!r}")
    if not isinstance(allow_tf32, bool):
        raise TypeError(f"allow_tf32 must be True or False, got {type(allow_tf32).__name__}")
    cupy = _cupy()
    ok, why = gpu_status(cupy)
    if not ok:
        raise RuntimeError(why)
    from ._providers import CoreProvider, NvrtcProvider

    if path in (None, "core"):
        core, core_why = core_module()
        if core is not None:
            engine = CudaEngine(CoreProvider(cupy, core, allow_tf32))
            engine.description = f"path core ({core_why}); {why}"
            return engine
        if path == "core":
            raise RuntimeError(core_why)
    else:
        core_why = "PYHESSK_CUDA_PATH or path= chose nvrtc"
    from . import _source

    _source.source_root()  # the headers must be there to compile
    engine = CudaEngine(NvrtcProvider(cupy, allow_tf32))
    engine.description = f"path nvrtc (kernels compiled at first use through CuPy/NVRTC; {core_why}); {why}"
    return engine


def _probe() -> tuple[CudaEngine | None, str]:
    forced = os.environ.get("PYHESSK_CUDA_PATH") or None
    try:
        engine = make_engine(forced)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        return None, str(exc)
    return engine, engine.description


BACKEND, DESCRIPTION = _probe()
UNAVAILABLE_REASON = DESCRIPTION

__all__ = ["BACKEND", "PATHS", "CudaEngine", "gpu_status", "make_engine"]
