"""Kernel providers of the GPU engine: launches, row-major GEMMs and array movement on CuPy's current stream.

``NvrtcProvider`` compiles ``csrc/cuda/kernels`` at run time with NVRTC (CuPy ``RawModule``, one module per
dtype and template tag, cached) and runs GEMMs through CuPy's cuBLAS handle. ``CoreProvider`` calls the
same kernels compiled ahead of time into ``pyhessk._core_cuda`` and its own cuBLAS handle. Both check
every argument against the kernel registry before launching (dtype, contiguity, null pointers), so a
wrong call is a Python exception rather than a fault on the device.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _kernels, _source

# cuBLAS / CUDA enum values (cublas_api.h, library_types.h)
_CUDA_R_32F, _CUDA_R_64F = 0, 1
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32, _COMPUTE_64F = 68, 77, 70
_GEMM_DEFAULT = -1
_OP_N, _OP_T = 0, 1

_POINTER_DTYPES = {"p": None, "I": np.dtype(np.int64), "D": np.dtype(np.float64)}


def check_gemm(ta: bool, tb: bool, M: int, N: int, K: int, A: Any, lda: int, B: Any, ldb: int, C: Any,
               ldc: int, batch: int = 1, strides: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Row-major C (M × N) = op(A) (M × K) · op(B) (K × N), ``batch`` times with operand b starting
    ``strides``·b elements on: ``ValueError`` if a buffer is too small, a leading dimension too short or a
    stride negative (an engine bug, caught before cuBLAS reads out of bounds)."""
    if min(M, N, K, batch) < 0:
        raise ValueError(f"gemm: negative size ({M}, {N}, {K}) or batch {batch}")
    for label, arr, rows, cols, ld, stride in (("A", A, K if ta else M, M if ta else K, lda, strides[0]),
                                               ("B", B, N if tb else K, K if tb else N, ldb, strides[1]),
                                               ("C", C, M, N, ldc, strides[2])):
        if stride < 0:
            raise ValueError(f"gemm: the batch stride of {label} is negative ({stride})")
        if rows and cols and batch and (ld < cols or arr.size < (batch - 1) * stride + (rows - 1) * ld + cols):
            raise ValueError(f"gemm: {label} holds {arr.size} elements, too few for {batch} × {rows} × {cols} "
                             f"with leading dimension {ld} and batch stride {stride}")
    if not (A.dtype == B.dtype == C.dtype):
        raise TypeError(f"gemm: mixed dtypes {A.dtype}, {B.dtype}, {C.dtype}")


def launch_plan(name: str, dtype: np.dtype, args: tuple[Any, ...], xp: Any, total: int) -> tuple[Any, int, int] | None:
    """The checked arguments' kernel spec and its (blocks, threads) for ``total`` items; None when there is
    nothing to launch. Shared by both providers' ``launch``."""
    check_launch(name, dtype, args, xp)
    blocks, threads = _kernels.launch_shape(name, total)
    if blocks == 0:
        return None
    return _kernels.KERNELS[name], blocks, threads


def check_launch(name: str, dtype: np.dtype, args: tuple[Any, ...], xp: Any) -> None:
    """``TypeError``/``ValueError`` unless ``args`` match the kernel's registered argument kinds."""
    spec = _kernels.KERNELS[name]
    if len(args) != len(spec.args):
        raise TypeError(f"{name}: expected {len(spec.args)} arguments, got {len(args)}")
    for pos, (kind, a) in enumerate(zip(spec.args, args)):
        if kind in _POINTER_DTYPES:
            if a is None:
                continue
            want = dtype if kind == "p" else _POINTER_DTYPES[kind]
            if not isinstance(a, xp.ndarray) or a.dtype != want or not a.flags.c_contiguous:
                got = f"{type(a).__name__} {getattr(a, 'dtype', '')}"
                raise TypeError(f"{name}: argument {pos} must be a contiguous {want} device array, got {got}")
        elif kind in "iu" and not isinstance(a, (int, np.integer)):
            raise TypeError(f"{name}: argument {pos} must be an integer, got {type(a).__name__}")
        elif kind == "s" and not isinstance(a, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: argument {pos} must be a real scalar, got {type(a).__name__}")


class CupyArrays:
    """Array movement shared by the device providers (CuPy arrays on the current device)."""

    def __init__(self, cupy: Any) -> None:
        self.xp = cupy

    def is_host(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def to_device(self, a: Any, dtype: Any) -> Any:
        """A C-contiguous device array of ``dtype``; no copy if ``a`` already is one."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def copy_to_device(self, a: Any, dtype: Any) -> Any:
        return self.xp.array(a, dtype=dtype, copy=True, order="C")

    def to_host(self, a: Any) -> np.ndarray:
        return self.xp.asnumpy(a)

    def namespace_of(self, a: Any) -> Any:
        return np if isinstance(a, np.ndarray) else self.xp

    def like(self, a: Any, ref: Any) -> Any:
        """``a`` in the array library of ``ref``."""
        if isinstance(ref, np.ndarray):
            return a if isinstance(a, np.ndarray) else self.xp.asnumpy(a)
        return self.xp.asarray(a)

    def stream_ptr(self) -> int:
        return self.xp.cuda.get_current_stream().ptr

    def _scalar(self, kind: str, a: Any, dtype: np.dtype) -> Any:
        if kind == "i":
            return np.int64(a)
        if kind == "u":
            return np.uint64(a)
        return dtype.type(a)


class NvrtcProvider(CupyArrays):
    """Kernels compiled at run time through CuPy's NVRTC; GEMMs on CuPy's cuBLAS handle."""

    path = "nvrtc"

    def __init__(self, cupy: Any, allow_tf32: bool = False) -> None:
        super().__init__(cupy)
        self.allow_tf32 = allow_tf32
        self._modules: dict[tuple[int, str, str | None, int | None], Any] = {}
        self._functions: dict[tuple[int, str, str, int | None], Any] = {}
        self._lock = threading.Lock()

    def _function(self, name: str, dtype: np.dtype, tag: int | None) -> Any:
        device = self.xp.cuda.runtime.getDevice()
        key = (device, name, dtype.name, tag)
        fn = self._functions.get(key)
        if fn is None:
            spec = _kernels.KERNELS[name]
            mkey = (device, dtype.name, spec.tag, tag)
            with self._lock:
                module = self._modules.get(mkey)
                if module is None:  # one module per (device, dtype, template tag): every kernel it instantiates
                    exprs = [_kernels.name_expression(k.name, dtype.name, tag)
                             for k in _kernels.KERNELS.values() if k.tag == spec.tag]
                    module = self.xp.RawModule(code=_source.kernel_source(), options=_source.NVRTC_OPTIONS,
                                               name_expressions=exprs)
                    self._modules[mkey] = module
                fn = module.get_function(_kernels.name_expression(name, dtype.name, tag))
                self._functions[key] = fn
        return fn

    def launch(self, name: str, dtype: np.dtype, tag: int | None, total: int, *args: Any) -> None:
        plan = launch_plan(name, dtype, args, self.xp, total)
        if plan is None:
            return
        spec, blocks, threads = plan
        kargs = [] if spec.per_item else [np.int64(total)]
        for kind, a in zip(spec.args, args):
            if kind in _POINTER_DTYPES:
                kargs.append(np.uint64(0) if a is None else a)
            else:
                kargs.append(self._scalar(kind, a, dtype))
        self._function(name, dtype, tag)((blocks,), (threads,), tuple(kargs))

    def gemm(self, ta: bool, tb: bool, M: int, N: int, K: int, alpha: float, A: Any, lda: int, B: Any, ldb: int,
             beta: float, C: Any, ldc: int, batch: int = 1, strides: tuple[int, int, int] = (0, 0, 0)) -> None:
        check_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, batch, strides)
        if M == 0 or N == 0 or batch == 0:
            return
        from cupy_backends.cuda.libs import cublas

        dt = np.dtype(C.dtype)
        if dt == np.float32:
            dtype_code = _CUDA_R_32F
            compute = _COMPUTE_32F_FAST_TF32 if self.allow_tf32 else _COMPUTE_32F
        else:
            dtype_code, compute = _CUDA_R_64F, _COMPUTE_64F
        a, b = np.array(alpha, dtype=dt), np.array(beta, dtype=dt)
        handle = self.xp.cuda.device.get_cublas_handle()
        cublas.setStream(handle, self.stream_ptr())
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
        # Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ.
        opB, opA = _OP_T if tb else _OP_N, _OP_T if ta else _OP_N
        if batch == 1:
            cublas.gemmEx(handle, opB, opA, N, M, K, a.ctypes.data, B.data.ptr, dtype_code, ldb, A.data.ptr,
                          dtype_code, lda, b.ctypes.data, C.data.ptr, dtype_code, ldc, compute, _GEMM_DEFAULT)
        else:
            sA, sB, sC = strides
            cublas.gemmStridedBatchedEx(handle, opB, opA, N, M, K, a.ctypes.data, B.data.ptr, dtype_code, ldb, sB,
                                        A.data.ptr, dtype_code, lda, sA, b.ctypes.data, C.data.ptr, dtype_code,
                                        ldc, sC, batch, compute, _GEMM_DEFAULT)


class CoreProvider(CupyArrays):
    """The same kernels compiled ahead of time into ``pyhessk._core_cuda`` (nvcc), with its own cuBLAS handle."""

    path = "core"

    def __init__(self, cupy: Any, core: Any, allow_tf32: bool = False) -> None:
        super().__init__(cupy)
        self.core = core
        self.allow_tf32 = allow_tf32

    def launch(self, name: str, dtype: np.dtype, tag: int | None, total: int, *args: Any) -> None:
        plan = launch_plan(name, dtype, args, self.xp, total)
        if plan is None:
            return
        spec, blocks, threads = plan
        kargs: list[Any] = [] if spec.per_item else [int(total)]
        kargs += [a if kind in _POINTER_DTYPES else (float(a) if kind == "s" else int(a))
                  for kind, a in zip(spec.args, args)]
        self.core.launch(name, 1 if dtype == np.float64 else 0, -1 if tag is None else int(tag), int(total),
                         blocks, threads, self.stream_ptr(), kargs)

    def gemm(self, ta: bool, tb: bool, M: int, N: int, K: int, alpha: float, A: Any, lda: int, B: Any, ldb: int,
             beta: float, C: Any, ldc: int, batch: int = 1, strides: tuple[int, int, int] = (0, 0, 0)) -> None:
        check_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, batch, strides)
        if M == 0 or N == 0 or batch == 0:
            return
        self.core.gemm(ta, tb, M, N, K, float(alpha), A, lda, B, ldb, float(beta), C, ldc, self.stream_ptr(),
                       self.allow_tf32, int(batch), *(int(s) for s in strides))
