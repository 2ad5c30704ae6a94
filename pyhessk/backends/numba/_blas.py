"""The GEMM of the Numba engine: NumPy's own BLAS, called from compiled code.

``np.dot`` inside ``@njit`` code calls SciPy's bundled OpenBLAS, while every GEMM of NumPy itself runs on
NumPy's bundled OpenBLAS. Two OpenBLAS thread pools then spin on the same cores, and a product that
should take 0.3 ms waited one scheduler tick (~4 ms) whenever the pools took turns (measured on 2 cores).
So the engine's kernels call ``gemm`` below, which calls the ``?gemm`` that NumPy loaded (one thread pool
in the process).

How: at import, this module looks the symbols up in NumPy's bundled library (ctypes, nothing compiled)
and registers their addresses with LLVM under fixed names (``pyhessk_numba_sgemm``/``…_dgemm``, 64-bit
integer interface). Compiled code refers to those names, so Numba's on-disk cache stays valid across
processes: the address is resolved when the cached code is loaded. Where NumPy's BLAS cannot be found
(a NumPy built against a system BLAS), the names point to small ctypes adapters onto SciPy's
``cython_blas`` (32-bit integers), which are slower per call but give the same results.
``PYHESSK_NUMBA_BLAS=scipy`` forces that path (read once, at import).
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from numba import types

from ._jit import jit

# (sgemm name, dgemm name) of the ILP64 interface, in the order they are tried in NumPy's bundled library
_ILP64_SYMBOLS = (("scipy_sgemm_64_", "scipy_dgemm_64_"), ("sgemm_64_", "dgemm_64_"))

_SNAME, _DNAME = "pyhessk_numba_sgemm", "pyhessk_numba_dgemm"

_p = types.voidptr
#: ?gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc), every argument by pointer
_SGEMM = types.ExternalFunction(_SNAME, types.void(*([_p] * 13)))
_DGEMM = types.ExternalFunction(_DNAME, types.void(*([_p] * 13)))


def _numpy_library_paths() -> list[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    found: list[str] = []
    for folder in ("numpy.libs", os.path.join("numpy", ".dylibs")):
        found += sorted(glob.glob(os.path.join(root, folder, "*blas*")))
    return found


def _numpy_ilp64() -> tuple[int, int, str] | None:
    """(sgemm address, dgemm address, library) of NumPy's bundled ILP64 BLAS, or None."""
    for path in _numpy_library_paths():
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 0) | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for s_name, d_name in _ILP64_SYMBOLS:
            try:
                s_fn, d_fn = getattr(lib, s_name), getattr(lib, d_name)
            except AttributeError:
                continue
            return (ctypes.cast(s_fn, ctypes.c_void_p).value, ctypes.cast(d_fn, ctypes.c_void_p).value,
                    os.path.basename(path))
    return None


def _capsule_address(capsule: Any) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get(capsule, name(capsule))


def _lp64_adapter(address: int, real: Any) -> Any:
    """A C-callable ILP64 ?gemm that forwards to the LP64 ?gemm at ``address`` (SciPy's cython_blas)."""
    c_int, ptr = ctypes.c_int, ctypes.POINTER
    rp = ptr(real)
    target = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ptr(c_int), ptr(c_int), ptr(c_int), rp, rp,
                              ptr(c_int), rp, ptr(c_int), rp, rp, ptr(c_int))(address)
    i64 = ptr(ctypes.c_int64)

    def call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):  # noqa: ANN001, ANN202 - a C callback
        def i32(x: Any) -> Any:
            return ctypes.byref(c_int(x[0]))

        target(ta, tb, i32(m), i32(n), i32(k), alpha, a, i32(lda), b, i32(ldb), beta, c, i32(ldc))

    return ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, i64, i64, i64, rp, rp, i64, rp, i64, rp, rp,
                            i64)(call)


_ADAPTERS: list[Any] = []  # the ctypes adapters must outlive every compiled caller


def _install() -> str:
    found = None if os.environ.get("PYHESSK_NUMBA_BLAS", "numpy") == "scipy" else _numpy_ilp64()
    if found is not None:
        sgemm, dgemm, name = found
        llvm.add_symbol(_SNAME, sgemm)
        llvm.add_symbol(_DNAME, dgemm)
        return f"NumPy's BLAS ({name}, ILP64)"
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    _ADAPTERS[:] = [_lp64_adapter(_capsule_address(capi["sgemm"]), ctypes.c_float),
                    _lp64_adapter(_capsule_address(capi["dgemm"]), ctypes.c_double)]
    llvm.add_symbol(_SNAME, ctypes.cast(_ADAPTERS[0], ctypes.c_void_p).value)
    llvm.add_symbol(_DNAME, ctypes.cast(_ADAPTERS[1], ctypes.c_void_p).value)
    return "SciPy's BLAS (scipy.linalg.cython_blas, through ctypes adapters)"


#: which BLAS the engine's GEMMs call, in words
BLAS = _install()


@jit
def _layout(A: Any) -> tuple[bool, int]:
    """(stored transposed?, leading dimension) of a 2-D view A whose rows or columns are contiguous.

    Row-major storage (unit column stride) → (False, row stride); a ``.T`` view of row-major storage
    (unit row stride) → (True, column stride). A dimension of extent 1 takes any stride.
    """
    r, c = A.shape
    item = A.itemsize
    s0, s1 = A.strides[0] // item, A.strides[1] // item
    if s1 == 1 or c == 1:
        return False, max(s0 if r > 1 else c, c, 1)
    if s0 == 1 or r == 1:
        return True, max(s1 if c > 1 else r, r, 1)
    return False, -1


@jit
def gemm(A: Any, B: Any, C: Any, beta: float = 0.0) -> None:
    """C = A @ B + beta·C for 2-D views (A (m, k), B (k, n), C (m, n)) through NumPy's BLAS.

    A and B may be ``.T`` views (a BLAS transpose flag, no copy); C must have contiguous rows. An operand
    with neither contiguous rows nor contiguous columns is copied first. beta = 0 overwrites C (NaN in C is
    not propagated).
    """
    m, kk = A.shape
    n = B.shape[1]
    if m == 0 or n == 0:
        return
    if kk == 0:
        for i in range(m):
            for j in range(n):
                C[i, j] = C[i, j] * beta if beta != 0.0 else 0.0
        return
    ta, lda = _layout(A)
    if lda < 0:
        A = np.ascontiguousarray(A)
        ta, lda = False, kk
    tb, ldb = _layout(B)
    if ldb < 0:
        B = np.ascontiguousarray(B)
        tb, ldb = False, n
    tc, ldc = _layout(C)
    if tc and m > 1 and n > 1:
        raise ValueError("gemm: C needs contiguous rows")
    # Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: BLAS gets B first.
    flags = np.empty(2, np.uint8)
    flags[0] = ord("T") if tb else ord("N")
    flags[1] = ord("T") if ta else ord("N")
    dims = np.empty(6, np.int64)
    dims[0] = n
    dims[1] = m
    dims[2] = kk
    dims[3] = ldb
    dims[4] = lda
    dims[5] = ldc
    coef = np.empty(2, C.dtype)
    coef[0] = 1.0
    coef[1] = beta
    if C.itemsize == 4:
        _SGEMM(flags[0:].ctypes, flags[1:].ctypes, dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes,
               coef[0:].ctypes, B.ctypes, dims[3:].ctypes, A.ctypes, dims[4:].ctypes, coef[1:].ctypes, C.ctypes,
               dims[5:].ctypes)
    else:
        _DGEMM(flags[0:].ctypes, flags[1:].ctypes, dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes,
               coef[0:].ctypes, B.ctypes, dims[3:].ctypes, A.ctypes, dims[4:].ctypes, coef[1:].ctypes, C.ctypes,
               dims[5:].ctypes)
