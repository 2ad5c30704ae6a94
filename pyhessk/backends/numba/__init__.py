"""The Numba engine: compiled CPU passes for when the C++ extension is not built.

Importing it needs ``numba`` (``pip install "pyhessk[numba]"``); nothing is compiled at import. Each
compiled function is built on its first call, once per dtype, and cached on disk by Numba, so later
processes load it instead of compiling.
"""

try:
    import numba
except ImportError as exc:  # the dispatcher reports this message as the reason the engine cannot run
    raise ImportError(f"the numba engine needs the numba package (pip install 'pyhessk[numba]'): {exc}") from exc

from ._blas import BLAS
from .mlp import NumbaBackend

BACKEND = NumbaBackend()
#: what ``pyhessk.show_config()`` prints for the engine
DESCRIPTION = f"numba {numba.__version__}, GEMMs on {BLAS}"

__all__ = ["BACKEND", "DESCRIPTION", "NumbaBackend"]
