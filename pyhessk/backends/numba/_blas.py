"""The GEMM of the Numba engine: NumPy's own BLAS, called from compiled code.

``np.dot`` inside ``@njit`` code calls SciPy's bundled OpenBLAS, while every GEMM of NumPy itself runs on
NumPy's bundled OpenBLAS. Two OpenBLAS thread pools then spin on the same cores, and a product that
should take 0.3 ms waited one scheduler tick (~4 ms) whenever the pools took turns (measured on 2 cores).
So the engine's kernels call ``gemm`` below, which calls the ``?gemm`` that NumPy loaded (one thread pool
in the process).

How: at import, this module looks the symbols up in NumPy's bundled library (ctypes; nothing is compiled)
and registers their addresses with LLVM under fixed names: ``pyhessk_numba_{s,d}gemm64`` (64-bit integer
interface), ``pyhessk_numba_{s,d}gemm32`` (32-bit) and the data symbol ``pyhessk_numba_blas_ilp64``, which
tells compiled code which of the two to call. Compiled code refers only to those names, so Numba's on-disk
cache stays valid across processes and configurations: the addresses and the flag are resolved when the
cached code is loaded. Without a bundled BLAS in NumPy (e.g. a NumPy linked to a system BLAS), or with
``PYHESSK_NUMBA_BLAS=scipy`` (read once, at import), the 32-bit names point to SciPy's ``cython_blas``,
the BLAS ``np.dot`` uses in compiled code.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .._blas import numpy_blas
from ._jit import jit

_FLAG = "pyhessk_numba_blas_ilp64"
_p = types.voidptr
#: ?gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc), every argument by pointer
_SGEMM64 = types.ExternalFunction("pyhessk_numba_sgemm64", types.void(*([_p] * 13)))
_DGEMM64 = types.ExternalFunction("pyhessk_numba_dgemm64", types.void(*([_p] * 13)))
_SGEMM32 = types.ExternalFunction("pyhessk_numba_sgemm32", types.void(*([_p] * 13)))
_DGEMM32 = types.ExternalFunction("pyhessk_numba_dgemm32", types.void(*([_p] * 13)))


def _capsule_address(capsule: Any) -> int:
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get(capsule, name(capsule))


_ILP64 = ctypes.c_int64(0)  # the flag's storage; lives as long as the module


def _install() -> str:
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    scipy_s, scipy_d = _capsule_address(capi["sgemm"]), _capsule_address(capi["dgemm"])
    found = None if os.environ.get("PYHESSK_NUMBA_BLAS", "numpy") == "scipy" else numpy_blas()
    s32, d32, s64, d64 = scipy_s, scipy_d, scipy_s, scipy_d  # the 64-bit names are unused unless the flag says
    if found is not None:
        sgemm, dgemm, ilp64, name = found
        if ilp64:
            s64, d64 = sgemm, dgemm
        else:
            s32, d32 = sgemm, dgemm
        _ILP64.value = int(ilp64)
        described = f"NumPy's BLAS ({name}{', ILP64' if ilp64 else ''})"
    else:
        described = "SciPy's BLAS (scipy.linalg.cython_blas)"
    for symbol, address in (("pyhessk_numba_sgemm32", s32), ("pyhessk_numba_dgemm32", d32),
                            ("pyhessk_numba_sgemm64", s64), ("pyhessk_numba_dgemm64", d64),
                            (_FLAG, ctypes.addressof(_ILP64))):
        llvm.add_symbol(symbol, address)
    return described


#: which BLAS the engine's GEMMs call, in words
BLAS = _install()


@intrinsic
def _ilp64(typingctx: Any) -> Any:
    """The value of the data symbol ``pyhessk_numba_blas_ilp64`` (1: 64-bit BLAS integers), read at run time."""

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        gv = builder.module.globals.get(_FLAG)
        if gv is None:
            gv = ir.GlobalVariable(builder.module, ir.IntType(64), _FLAG)
            gv.linkage = "external"
        return builder.load(gv)

    return types.int64(), codegen


@jit
def _layout(A: Any) -> tuple[bool, int]:
    """(stored transposed?, leading dimension) of a 2-D view A whose rows or columns are contiguous.

    Row-major storage (unit column stride) → (False, row stride); a ``.T`` view of row-major storage
    (unit row stride) → (True, column stride). A dimension of extent 1 takes any stride. Neither → (False, −1).
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
    with neither contiguous rows nor contiguous columns is copied first. beta = 0 overwrites C (what C held
    before, NaN included, does not matter).
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
    coef = np.empty(2, C.dtype)
    coef[0] = 1.0
    coef[1] = beta
    if _ilp64() != 0:
        _call(flags, np.array((n, m, kk, ldb, lda, ldc), np.int64), coef, A, B, C, True)
    else:
        _call(flags, np.array((n, m, kk, ldb, lda, ldc), np.int32), coef, A, B, C, False)


@jit
def _call(flags: Any, dims: Any, coef: Any, A: Any, B: Any, C: Any, ilp64: bool) -> None:
    """The BLAS call of ``gemm``, column-major: Cᵀ (M × N) = op(B)ᵀ op(A)ᵀ with dims = (M, N, K, ldb, lda, ldc)
    in the integer width of the chosen BLAS (``ilp64``: 64-bit)."""
    f0, f1 = flags[0:].ctypes, flags[1:].ctypes
    M, N, K = dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes
    ldb, lda, ldc = dims[3:].ctypes, dims[4:].ctypes, dims[5:].ctypes
    alpha, beta = coef[0:].ctypes, coef[1:].ctypes
    if C.itemsize == 4:
        if ilp64:
            _SGEMM64(f0, f1, M, N, K, alpha, B.ctypes, ldb, A.ctypes, lda, beta, C.ctypes, ldc)
        else:
            _SGEMM32(f0, f1, M, N, K, alpha, B.ctypes, ldb, A.ctypes, lda, beta, C.ctypes, ldc)
    elif ilp64:
        _DGEMM64(f0, f1, M, N, K, alpha, B.ctypes, ldb, A.ctypes, lda, beta, C.ctypes, ldc)
    else:
        _DGEMM32(f0, f1, M, N, K, alpha, B.ctypes, ldb, A.ctypes, lda, beta, C.ctypes, ldc)
