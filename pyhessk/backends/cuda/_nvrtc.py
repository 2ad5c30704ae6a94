"""Compile-only access to NVRTC through ctypes: checks that the kernel source compiles for a GPU
architecture without needing a GPU, a driver or CuPy (used by the tests and ``check_kernels``).

libnvrtc is looked up in the ``nvidia-cuda-nvrtc`` wheel, then ``$CUDA_HOME``/``/usr/local/cuda``, then
the loader's search path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import importlib.util
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class CompileResult:
    """What NVRTC produced: PTX text, the lowered (mangled) name of each name expression, and the log."""

    ptx: str
    lowered: dict[str, str]
    log: str


def _candidates() -> list[str]:
    paths: list[str] = []
    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        paths += sorted(glob.glob(os.path.join(base, "*", "lib", "libnvrtc.so*")), reverse=True)
        paths += sorted(glob.glob(os.path.join(base, "cuda_nvrtc", "lib", "libnvrtc.so*")), reverse=True)
    for home in filter(None, (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda")):
        paths += sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*")), reverse=True)
    found = ctypes.util.find_library("nvrtc")
    if found:
        paths.append(found)
    return [p for p in paths if "builtins" not in os.path.basename(p)]


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL:
    """The NVRTC shared library; ``OSError`` naming where it looked if there is none."""
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    raise OSError("libnvrtc was not found (pip install nvidia-cuda-nvrtc, or install the CUDA toolkit)"
                  + ("; tried " + "; ".join(errors) if errors else ""))


def version() -> tuple[int, int]:
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_source(source: str, name_expressions: list[str], options: tuple[str, ...] = (), arch: str = "compute_90",
                   name: str = "pyhessk_kernels.cu") -> CompileResult:
    """Compile ``source`` to PTX for ``arch``; ``RuntimeError`` with the NVRTC log if it does not compile."""
    lib = library()
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    prog = ctypes.c_void_p()

    def check(status: int, what: str, log: str = "") -> None:
        if status != 0:
            raise RuntimeError(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(status).decode()}\n{log}")

    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None), "create")
    try:
        for expr in name_expressions:
            check(lib.nvrtcAddNameExpression(prog, expr.encode()), f"name expression {expr}")
        opts = [o.encode() for o in (*options, f"--gpu-architecture={arch}")]
        argv = (ctypes.c_char_p * len(opts))(*opts)
        status = lib.nvrtcCompileProgram(prog, len(opts), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        check(status, "compilation", log)
        lowered = {}
        for expr in name_expressions:
            out = ctypes.c_char_p()
            check(lib.nvrtcGetLoweredName(prog, expr.encode(), ctypes.byref(out)), f"lowered name of {expr}")
            lowered[expr] = out.value.decode()
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetPTX(prog, ptx), "PTX")
        return CompileResult(ptx.value.decode(errors="replace"), lowered, log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
