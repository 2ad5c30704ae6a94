"""What a results table must say about the machine: CPU, cores, date, versions, BLAS and its threads."""

from __future__ import annotations

import ctypes
import datetime
import glob
import os
import platform
import re
from typing import Any

_limiter: Any = None  # keeps a threadpoolctl limit alive for the whole session

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")


def pin_thread_env(n: int) -> None:
    """Set every thread-count variable OpenBLAS/OpenMP/MKL/Numba read when their libraries initialise: call
    before NumPy is imported (``limit_blas_threads`` covers a NumPy that is already loaded)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def _openblas_lib() -> Any:
    """NumPy's bundled OpenBLAS (scipy-openblas wheels) through ctypes, or None."""
    import numpy as np

    here = os.path.dirname(np.__file__)
    for path in glob.glob(os.path.join(here, os.pardir, "numpy.libs", "lib*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""),
                               ("openblas", "64_"), ("openblas", "")):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            if get is not None:
                return lib, prefix, suffix
    return None


def limit_blas_threads(n: int) -> str:
    """Limit the BLAS/OpenMP pools to n threads now (the environment variables cover later loads)."""
    global _limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        _limiter = threadpool_limits(limits=n)
        return "env vars + threadpoolctl"
    found = _openblas_lib()
    if found is not None:
        lib, prefix, suffix = found
        getattr(lib, f"{prefix}_set_num_threads{suffix}")(ctypes.c_int(n))
        return "env vars + openblas_set_num_threads (ctypes; threadpoolctl not installed)"
    return "env vars only (threadpoolctl not installed)"


def blas_threads() -> int | None:
    """The thread count the BLAS under NumPy reports."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        found = _openblas_lib()
        if found is None:
            return None
        lib, prefix, suffix = found
        return int(getattr(lib, f"{prefix}_get_num_threads{suffix}")())
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return int(pools[0]["num_threads"]) if pools else None


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MODES = {
    # freed memory stays in the heap and is reused: no page faults once a product has run (steady state)
    "warm": 1 << 30,
    # glibc's initial thresholds, pinned (no dynamic adjustment): every array > 128 KiB is a fresh mmap
    "cold": 128 * 1024,
}


def configure_malloc(mode: str) -> str:
    """Pin glibc's mmap and trim thresholds, so that timings do not depend on the allocation history.

    glibc adapts its mmap threshold to the largest freed block; whether a product's arrays come back
    from the heap or page-fault in fresh from the kernel then depends on which tests ran before (on this
    VM a page fault costs ~1.5 µs: on P, 3,000 faults per gradient triple its time). ``mode`` is "warm",
    "cold" or "glibc" (leave glibc's adaptive default alone). Returns what was done.
    """
    if mode == "glibc":
        return "glibc default (adaptive thresholds; timings depend on the allocation history)"
    if mode not in MALLOC_MODES:
        raise ValueError(f"PYHESSK_BENCH_MALLOC must be one of {[*MALLOC_MODES, 'glibc']}, got {mode!r}")
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MODES[mode]) and libc.mallopt(_M_TRIM_THRESHOLD, MALLOC_MODES[mode])
    except (OSError, AttributeError):
        ok = False
    if not ok:
        return f"{mode} requested, but mallopt is unavailable (not glibc): allocator left as is"
    size = MALLOC_MODES[mode]
    return f"{mode}: glibc M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = {size // 1024} KiB (pinned with mallopt)"


def minor_faults() -> int:
    """Minor page faults of this process so far (Linux), or -1."""
    try:
        with open("/proc/self/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[7])
    except (OSError, IndexError, ValueError):
        return -1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return platform.processor() or platform.machine()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"^flags\s*:\s*(.+)$", fh.read(), re.M)
    except OSError:
        return []
    flags = set(m.group(1).split()) if m else set()
    return sorted(f for f in flags if f in {"avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512vl", "amx_tile"})


def blas_core() -> dict:
    """The kernels (core) the BLAS runs in this process and ``OPENBLAS_CORETYPE``, which forces them.

    NumPy's "openblas configuration" string is the build record: it names the build machine's core,
    not the one chosen here at load time.
    """
    env = os.environ.get("OPENBLAS_CORETYPE") or None
    try:
        from pyhessk._blasinfo import blas_report

        return {"core": blas_report()["core"], "coretype_env": env}
    except Exception:  # noqa: BLE001 - an older pyhessk, or a BLAS the report cannot read
        return {"core": "unknown", "coretype_env": env}


def blas_config() -> dict:
    import numpy as np

    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        simd = cfg.get("SIMD Extensions", {})
        found = {"name": blas.get("name"), "version": blas.get("version"),
                 "config": blas.get("openblas configuration"), "numpy_simd_found": simd.get("found")}
    except Exception:  # noqa: BLE001 - older NumPy has no mode="dicts"
        found = {"name": "unknown"}
    return {**found, **blas_core()}


def _version(mod: str) -> str | None:
    try:
        module = __import__(mod)
    except ImportError:
        return None
    return getattr(module, "__version__", "?")


def collect() -> dict:
    """Everything the results header shows."""
    import numpy as np

    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores_available": ncpu,
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "pyhessk": _version("pyhessk"),
        "pytest_benchmark": _version("pytest_benchmark"),
        "threadpoolctl": _version("threadpoolctl"),
        "blas": blas_config(),
        "blas_threads": blas_threads(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
