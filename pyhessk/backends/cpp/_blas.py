"""Which BLAS the C++ engine calls.

NumPy (2.x wheels) and SciPy each bundle their own OpenBLAS, and each has its own thread pool. When the C++
engine's GEMMs ran on SciPy's pool between NumPy's own GEMMs, the idle pool's spinning threads held the two
cores and each switch cost a scheduler tick (~4 ms, measured). So the engine calls the BLAS that NumPy
itself loaded when it can find it (one pool in the process), and SciPy's ``cython_blas`` otherwise.
``PYHESSK_CPP_BLAS=scipy`` forces SciPy's.
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any

import numpy as np

# (sgemm name, dgemm name, 64-bit integer interface), in the order they are tried
_SYMBOLS = (
    ("scipy_sgemm_64_", "scipy_dgemm_64_", True),  # NumPy's bundled scipy-openblas64
    ("sgemm_64_", "dgemm_64_", True),
    ("scipy_sgemm_", "scipy_dgemm_", False),
    ("sgemm_", "dgemm_", False),
)


def _numpy_blas_libraries() -> list[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    found = []
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        found += sorted(glob.glob(os.path.join(root, folder, "*blas*")))
    return found


def numpy_blas() -> tuple[int, int, bool, str] | None:
    """(sgemm address, dgemm address, ILP64?, library) of the BLAS bundled with NumPy, or None."""
    for path in _numpy_blas_libraries():
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for s_name, d_name, ilp64 in _SYMBOLS:
            try:
                s_fn, d_fn = getattr(lib, s_name), getattr(lib, d_name)
            except AttributeError:
                continue
            return (ctypes.cast(s_fn, ctypes.c_void_p).value, ctypes.cast(d_fn, ctypes.c_void_p).value, ilp64,
                    os.path.basename(path))
    return None


def install(core: Any) -> str:
    """Give the C++ engine its GEMMs; returns a description of the BLAS chosen."""
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    core.set_blas(capi["sgemm"], capi["dgemm"])
    if os.environ.get("PYHESSK_CPP_BLAS", "numpy") != "scipy":
        found = numpy_blas()
        if found is not None:
            sgemm, dgemm, ilp64, name = found
            core.set_blas_addresses(sgemm, dgemm, ilp64)
            return f"NumPy's BLAS ({name}{', ILP64' if ilp64 else ''})"
    return "SciPy's BLAS (scipy.linalg.cython_blas)"
