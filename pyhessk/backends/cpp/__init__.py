"""The C++ CPU engine: fused forward, backward and R-pass kernels (``pyhessk._core_cpu``) on SciPy's BLAS."""

try:
    from ... import _core_cpu
except ImportError as exc:  # the extension was not built (no compiler at install time, or PYHESSK_BUILD_CPP=0)
    raise ImportError(f"the C++ extension pyhessk._core_cpu is not built ({exc}); reinstall pyhessk with a "
                      "C++17 compiler available to get it") from exc

from .mlp import CppBackend

BACKEND = CppBackend(_core_cpu)


def _describe() -> str:
    threads = _core_cpu.entry_helpers()["threads"]
    if _core_cpu.build_info().get("openmp") is None:
        return "GNH entry loops on one thread (built without OpenMP)"
    if threads == 1:
        return "GNH entry loops on one thread (OpenMP's thread count is 1)"
    return f"GNH entry loops on up to {threads} threads (OpenMP's count; helpers join when a core is free)"


#: what ``pyhessk.show_config()`` prints for the engine
DESCRIPTION = _describe()

__all__ = ["BACKEND", "CppBackend", "DESCRIPTION"]
