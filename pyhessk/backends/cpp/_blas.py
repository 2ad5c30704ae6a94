"""Which BLAS the C++ engine calls: NumPy's own when it can be found (``backends._blas`` says why), SciPy's
``cython_blas`` otherwise. ``PYHESSK_CPP_BLAS=scipy`` forces SciPy's.
"""

from __future__ import annotations

import os
from typing import Any

from .._blas import numpy_blas


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
