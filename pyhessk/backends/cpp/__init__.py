"""The C++ CPU engine: fused forward, backward and R-pass kernels (``pyhessk._core_cpu``) on SciPy's BLAS."""

try:
    from ... import _core_cpu
except ImportError as exc:  # the extension was not built (no compiler at install time, or PYHESSK_BUILD_CPP=0)
    raise ImportError(f"the C++ extension pyhessk._core_cpu is not built ({exc}); reinstall pyhessk with a "
                      "C++17 compiler available to get it") from exc

from .mlp import CppBackend

BACKEND = CppBackend(_core_cpu)

__all__ = ["BACKEND", "CppBackend"]
