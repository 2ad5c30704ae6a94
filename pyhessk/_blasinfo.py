"""Which kernels NumPy's BLAS runs, and whether the CPU could run faster ones.

Every CPU engine's GEMMs go through the BLAS NumPy loaded (``backends/_blas.py``). A DYNAMIC_ARCH OpenBLAS
picks its kernels from the CPUID when it loads, and it can miss: on an AVX-512 AMD EPYC VM the bundled
OpenBLAS 0.3.31 chose its Haswell (AVX2) kernels, and ``OPENBLAS_CORETYPE=SkylakeX`` took sgemm from 217 to
400 GFLOP/s on (512, 1024) @ (1024, 1024). The variable is read only when the library loads, i.e. before
NumPy is imported, so pyhessk never sets it: it reports the choice and says how to change it.
"""

from __future__ import annotations

from collections.abc import Iterable
import ctypes
import os
import re
import sys

#: the CPU flags OpenBLAS's SkylakeX kernels need
AVX512_FLAGS: tuple[str, ...] = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")

#: OpenBLAS's x86-64 cores (DYNAMIC_ARCH names) without AVX-512 kernels; SkylakeX, Cooperlake and
#: SapphireRapids are the ones with them
PRE_AVX512_CORES: frozenset[str] = frozenset({
    "katmai", "coppermine", "northwood", "prescott", "banias", "atom", "core2", "penryn", "dunnington",
    "nehalem", "athlon", "opteron", "opteron_sse3", "barcelona", "nano", "sandybridge", "bobcat", "bulldozer",
    "piledriver", "haswell", "steamroller", "excavator", "zen",
})

#: OpenBLAS's x86-64 cores with AVX-512 kernels
AVX512_CORES: frozenset[str] = frozenset({"skylakex", "cooperlake", "sapphirerapids"})

# (prefix, suffix) of OpenBLAS's C API names, in the order they are tried: scipy-openblas64 (NumPy 2),
# scipy-openblas32, openblas64_ (NumPy 1), plain openblas
_API_NAMES = (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"), ("openblas", ""))


def coretype_hint(library: str | None, core: str | None, coretype_env: str | None,
                  cpu_flags: Iterable[str] | None) -> str | None:
    """The advice to set ``OPENBLAS_CORETYPE``, or None when there is none to give.

    A hint is given only when all of these hold: the library is OpenBLAS, ``OPENBLAS_CORETYPE`` is unset
    (``coretype_env`` is None or empty), the core OpenBLAS chose has no AVX-512 kernels (Haswell, Zen,
    SandyBridge, ...; compared case-insensitively), and ``cpu_flags`` holds every flag of ``AVX512_FLAGS``.
    ``cpu_flags`` None means the flags are unknown (no hint).
    """
    if not library or "openblas" not in library.lower() or coretype_env:
        return None
    if not core or core.strip().lower() not in PRE_AVX512_CORES or cpu_flags is None:
        return None
    flags = {f.lower() for f in cpu_flags}
    if not all(f in flags for f in AVX512_FLAGS):
        return None
    return (f"OpenBLAS runs its {core.strip()} kernels, but this CPU has AVX-512 ({', '.join(AVX512_FLAGS)}). "
            "Set OPENBLAS_CORETYPE=SkylakeX in the environment before Python starts "
            "(e.g. `OPENBLAS_CORETYPE=SkylakeX python script.py`; setting it after NumPy is loaded does nothing) "
            "for its AVX-512 kernels. pyhessk's CPU engines share NumPy's BLAS, so their GEMMs run on them too "
            "(sgemm went 1.6-1.9x faster on an AMD EPYC VM).")


def cpu_avx512_flags() -> list[str] | None:
    """The flags of ``AVX512_FLAGS`` this CPU has (Linux: ``/proc/cpuinfo``), or None where unknown."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"^flags\s*:\s*(.*)$", fh.read(), re.M)
    except OSError:
        return None
    if m is None:
        return None
    flags = set(m.group(1).split())
    return [f for f in AVX512_FLAGS if f in flags]


def _from_threadpoolctl(names: set[str]) -> dict | None:
    """NumPy's BLAS pool as threadpoolctl sees it (the one whose file NumPy bundles, else the only one)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    mine = [p for p in pools if os.path.basename(p.get("filepath") or "") in names]
    pool = mine[0] if mine else pools[0] if len(pools) == 1 else None
    if pool is None:
        return None
    return {"library": pool.get("internal_api"), "version": pool.get("version"),
            "core": pool.get("architecture"), "threads": pool.get("num_threads"),
            "filepath": os.path.basename(pool.get("filepath") or "") or None, "source": "threadpoolctl"}


def _from_symbols(handles: list) -> dict | None:
    """The same, read through OpenBLAS's own ``*get_corename*``, ``*get_config*`` and ``*get_num_threads*``."""
    for lib, path in handles:
        for prefix, suffix in _API_NAMES:
            corename = getattr(lib, f"{prefix}_get_corename{suffix}", None)
            if corename is None:
                continue
            corename.restype = ctypes.c_char_p
            config = getattr(lib, f"{prefix}_get_config{suffix}", None)
            version = None
            if config is not None:
                config.restype = ctypes.c_char_p
                m = re.match(r"OpenBLAS\s+(\S+)", (config() or b"").decode(errors="replace"))
                version = m.group(1) if m else None
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            return {"library": "openblas", "version": version,
                    "core": (corename() or b"").decode(errors="replace") or None,
                    "threads": int(threads()) if threads is not None else None,
                    "filepath": os.path.basename(path), "source": "OpenBLAS C API (ctypes)"}
    return None


def _from_numpy() -> dict:
    """Name and version from NumPy's build record (the core it runs is not there)."""
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 - older NumPy has no mode="dicts"
        blas = {}
    return {"library": blas.get("name"), "version": blas.get("version"), "core": None, "threads": None,
            "filepath": None, "source": "numpy.show_config"}


def blas_report() -> dict:
    """NumPy's BLAS as it runs in this process, and the hint of ``coretype_hint``.

    Keys: ``library`` ("openblas", "mkl", ... or "unknown"), ``version``, ``core`` (the kernels OpenBLAS
    chose, e.g. "Haswell", or "unknown"), ``threads``, ``filepath`` (file name of the library), ``source``
    (where these came from: threadpoolctl, else OpenBLAS's C API through ctypes, else NumPy's build record),
    ``coretype_env`` (``OPENBLAS_CORETYPE`` or None), ``cpu_avx512`` (True, False or None where unknown),
    ``cpu_avx512_flags`` (those of ``AVX512_FLAGS`` the CPU has, or None) and ``hint`` (str or None).
    """
    from .backends._blas import loaded_numpy_blas

    handles = list(loaded_numpy_blas())
    info = _from_threadpoolctl({os.path.basename(path) for _, path in handles})
    if info is None or not info.get("core"):
        info = _from_symbols(handles) or info or _from_numpy()
    info["library"] = info.get("library") or "unknown"
    info["core"] = info.get("core") or "unknown"
    info["coretype_env"] = os.environ.get("OPENBLAS_CORETYPE") or None
    flags = cpu_avx512_flags()
    info["cpu_avx512_flags"] = flags
    info["cpu_avx512"] = None if flags is None else len(flags) == len(AVX512_FLAGS)
    info["hint"] = coretype_hint(info["library"], info["core"], info["coretype_env"], flags)
    return info


def runs_avx512_kernels(info: dict) -> bool:
    """Whether the BLAS of ``blas_report`` is an OpenBLAS running one of its AVX-512 cores (``AVX512_CORES``)."""
    return "openblas" in str(info.get("library")).lower() and str(info.get("core")).strip().lower() in AVX512_CORES


def describe(info: dict) -> str:
    """One line for ``show_config`` and result headers: library, version, core, threads."""
    core = f"core {info['core']}"
    if info.get("coretype_env"):
        core += f" (OPENBLAS_CORETYPE={info['coretype_env']})"
    threads = f"{info['threads']} threads" if info.get("threads") is not None else "threads unknown"
    name = " ".join(str(x) for x in (info["library"], info.get("version")) if x)
    return f"{name}, {core}, {threads}" + (f" [{info['filepath']}]" if info.get("filepath") else "")
