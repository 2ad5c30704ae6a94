"""The BLAS NumPy itself loaded, found by symbol, for the compiled engines (C++ and Numba).

NumPy (2.x wheels) and SciPy each bundle their own OpenBLAS, each with its own thread pool. An engine whose
GEMMs ran on SciPy's pool between NumPy's own GEMMs paid a scheduler tick (~4 ms, measured on 2 cores)
whenever the idle pool's spinning threads held the cores. So both compiled engines call the ``?gemm`` that
NumPy loaded (one pool in the process) when it can be found, and SciPy's ``cython_blas`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
import ctypes
import glob
import os

import numpy as np

# (sgemm name, dgemm name, 64-bit integer interface), in the order they are tried
_SYMBOLS = (
    ("scipy_sgemm_64_", "scipy_dgemm_64_", True),  # NumPy 2's bundled scipy-openblas64
    ("sgemm_64_", "dgemm_64_", True),  # NumPy 1's openblas64_
    ("scipy_sgemm_", "scipy_dgemm_", False),
    ("sgemm_", "dgemm_", False),
)


def _numpy_blas_libraries() -> list[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    found: list[str] = []
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        found += sorted(glob.glob(os.path.join(root, folder, "*blas*")))
    return found


def loaded_numpy_blas() -> Iterator[tuple[ctypes.CDLL, str]]:
    """(handle, path) of each BLAS bundled with NumPy that the process has loaded. The libraries are only
    looked up (``RTLD_NOLOAD``), never loaded a second time."""
    for path in _numpy_blas_libraries():
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        yield lib, path


def numpy_blas() -> tuple[int, int, bool, str] | None:
    """(sgemm address, dgemm address, 64-bit integers?, library) of the BLAS bundled with NumPy, or None
    (e.g. a NumPy linked to a system BLAS). The library is only looked up, never loaded a second time."""
    for lib, path in loaded_numpy_blas():
        for s_name, d_name, ilp64 in _SYMBOLS:
            try:
                s_fn, d_fn = getattr(lib, s_name), getattr(lib, d_name)
            except AttributeError:
                continue
            return (ctypes.cast(s_fn, ctypes.c_void_p).value, ctypes.cast(d_fn, ctypes.c_void_p).value, ilp64,
                    os.path.basename(path))
    return None
