"""Host emulation of the GPU engine, for testing without a GPU.

``csrc/cuda/emulation/host_kernels.cpp`` runs every CUDA kernel's step functions in plain loops; it is
compiled here with the host C++ compiler and loaded with ctypes. ``HostProvider`` then offers the same
interface as the device providers, with NumPy arrays as "device" memory and NumPy GEMMs, so
``CudaEngine(HostProvider())`` runs the GPU engine's exact pass orchestration, kernel index arithmetic and
launch checks on the CPU. It is slow and is not an engine users pick.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _kernels
from ._providers import check_gemm, check_launch

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_CTYPES = {"i": ctypes.c_longlong, "s": ctypes.c_double, "u": ctypes.c_ulonglong, "p": ctypes.c_void_p,
           "I": ctypes.c_void_p, "D": ctypes.c_void_p}


def build_library(source_root: str, compiler: str | None = None) -> ctypes.CDLL:
    """Compile and load the emulation library (once per process); ``RuntimeError`` if there is no compiler."""
    global _library
    with _lock:
        if _library is not None:
            return _library
        cxx = compiler or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
        if not cxx:
            raise RuntimeError("no C++ compiler found to build the CUDA kernels' host emulation")
        out_dir = tempfile.mkdtemp(prefix="pyhessk-emu-")
        target = os.path.join(out_dir, "host_kernels.so")
        src = os.path.join(source_root, "cuda", "emulation", "host_kernels.cpp")
        cmd = [cxx, "-std=c++17", "-O1", "-fPIC", "-shared", f"-I{source_root}", src, "-o", target]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"building the host emulation failed:\n{' '.join(cmd)}\n{proc.stderr}")
        lib = ctypes.CDLL(target)
        for spec in _kernels.KERNELS.values():
            fn = getattr(lib, f"emu_{spec.name}")
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong] + [_CTYPES[k] for k in spec.args]
        _library = lib
        return lib


class HostProvider:
    """The device-provider interface over NumPy arrays and the emulated kernels."""

    path = "host-emulation"
    xp = np

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.launches: list[tuple[str, int, int, int]] = []  # (kernel, total, blocks, threads), for tests

    def is_host(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def to_device(self, a: Any, dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(a, dtype=dtype))

    def copy_to_device(self, a: Any, dtype: Any) -> np.ndarray:
        return np.array(a, dtype=dtype, copy=True, order="C")

    def to_host(self, a: Any) -> np.ndarray:
        return a

    def namespace_of(self, a: Any) -> Any:
        return np

    def like(self, a: Any, ref: Any) -> Any:
        return np.asarray(a)

    def launch(self, name: str, dtype: np.dtype, tag: int | None, total: int, *args: Any) -> None:
        check_launch(name, dtype, args, np)
        blocks, threads = _kernels.launch_shape(name, total)
        self.launches.append((name, total, blocks, threads))
        if blocks == 0:
            return
        spec = _kernels.KERNELS[name]
        cargs = []
        for kind, a in zip(spec.args, args):
            if kind in "pID":
                cargs.append(None if a is None else a.ctypes.data)
            elif kind == "s":
                cargs.append(float(a))
            else:
                cargs.append(int(a))
        getattr(self.lib, f"emu_{name}")(1 if dtype == np.float64 else 0, -1 if tag is None else int(tag), int(total),
                                         *cargs)

    def gemm(self, ta: bool, tb: bool, M: int, N: int, K: int, alpha: float, A: Any, lda: int, B: Any, ldb: int,
             beta: float, C: Any, ldc: int, batch: int = 1, strides: tuple[int, int, int] = (0, 0, 0)) -> None:
        check_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, batch, strides)
        if M == 0 or N == 0 or batch == 0:
            return

        def mat(x: np.ndarray, rows: int, cols: int, ld: int, stride: int) -> np.ndarray:
            """(batch, rows, cols) views of a row-major operand, matrix b starting stride·b elements on."""
            return as_strided(x, shape=(batch, rows, cols), strides=(stride * x.itemsize, ld * x.itemsize, x.itemsize))

        sA, sB, sC = strides
        a = mat(A, K, M, lda, sA).transpose(0, 2, 1) if ta else mat(A, M, K, lda, sA)
        b = mat(B, N, K, ldb, sB).transpose(0, 2, 1) if tb else mat(B, K, N, ldb, sB)
        c = mat(C, M, N, ldc, sC)
        prod = alpha * (a @ b)
        if beta == 0:
            c[...] = prod
        else:
            c[...] = beta * c + prod


def emulated_engine() -> Any:
    """A ``CudaEngine`` on the host emulation (builds the emulation library on first use)."""
    from ._engine import CudaEngine
    from ._source import source_root

    engine = CudaEngine(HostProvider(build_library(str(source_root()))))
    engine.description = "host emulation of the GPU kernels (tests only, no GPU used)"
    return engine


def install_for_tests() -> None:
    """Register the emulated engine as ``cuda`` in this process, so the whole oracle suite runs the GPU
    engine's code on the CPU (``PYHESSK_TEST_CUDA_EMULATION=1`` in tests/conftest.py). Never on a real GPU
    engine: only when the real probe says the engine cannot run."""
    from ... import _dispatch

    if _dispatch.probe("cuda")[0] is not None:
        return
    engine = emulated_engine()
    with _dispatch._lock:
        _dispatch._probes["cuda"] = (engine, engine.description)
