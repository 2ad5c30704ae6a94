"""The one place that turns user arrays into what engines accept, with errors that name the argument.

Rules (SPEC §2): float32 and float64 are the working dtypes; an array that carries its own float dtype
(a NumPy array, a CPU tensor) must match the working dtype exactly, since mixing float32 and float64 is
an error and never a silent cast. Python sequences and integer/bool arrays carry no precision and are
converted to the working dtype. NaN and Inf are rejected. Non-contiguous arrays are accepted (copied to
C order); inputs are never modified.

GPU arrays (CuPy, or anything with ``__cuda_array_interface__`` or a CUDA DLPack capsule: PyTorch, JAX)
are accepted where the engine is ``cuda`` (``device=True``): they become CuPy arrays without a copy (a copy
is made only to make them C-contiguous) and are checked with the same rules on the device. On a CPU
engine they are a ``TypeError``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def working_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Normalise a dtype argument to float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def is_gpu_array(x: Any) -> bool:
    """Whether ``x`` lives in GPU memory (CuPy, or ``__cuda_array_interface__``, or a CUDA DLPack device)."""
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None or isinstance(x, np.ndarray):
        return False
    try:
        return int(dev()[0]) in _DLPACK_CUDA_DEVICES
    except Exception:  # noqa: BLE001 - a foreign object whose device cannot be read is not a GPU array
        return False


def namespace_of(x: Any) -> Any:
    """The array library of an engine's array: ``cupy`` for the CuPy arrays the cuda engine takes and
    returns, else ``numpy``. Results made from such an array stay in its library (and on its device)."""
    if isinstance(x, np.ndarray) or not is_gpu_array(x):
        return np
    import cupy

    return cupy


def to_host(x: Any) -> np.ndarray:
    """An engine's array as NumPy: copied from the device for the cuda engine's CuPy arrays, else as it is.
    For the parts of pyhessk that compute on the host (Woodbury solves, HODLR compression)."""
    return x.get() if hasattr(x, "__cuda_array_interface__") else np.asarray(x)


def host_float64(x: Any) -> np.ndarray:
    """``to_host`` in float64."""
    return np.asarray(to_host(x), dtype=np.float64)


def to_cupy(x: Any, name: str) -> Any:
    """The CuPy view of a GPU array (zero-copy); ``TypeError`` naming the argument if that is impossible."""
    try:
        import cupy
    except ImportError as exc:
        raise TypeError(f"{name} is a GPU array, but cupy is not installed, which the 'cuda' engine needs") from exc
    if isinstance(x, cupy.ndarray):
        return x
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(cai.get("shape", ()))
        if int(np.prod(shape)) > 0 and not cai.get("data", (0,))[0]:
            raise TypeError(f"{name} is a GPU array with a null data pointer; the 'cuda' engine cannot read it")
    try:
        return cupy.asarray(x) if cai is not None else cupy.from_dlpack(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad argument
        raise TypeError(f"{name} is a GPU array that the 'cuda' engine cannot read ({type(exc).__name__}: {exc})") from exc


def _float_rules(arr: Any, name: str, dtype: np.dtype | None, ndim: int | tuple[int, ...] | None, ref: str,
                 lib: str, strict: bool) -> Any:
    """The dtype and rank rules of ``as_float`` for a NumPy or CuPy array: float32/float64 kept, integers and
    booleans cast, anything else a TypeError; the other float width is an error when ``strict`` (an array
    that has a dtype; ``lib`` names its module in the hint), else cast (a list); a rank not in ``ndim`` is a
    ValueError."""
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {arr.dtype}; pyhessk computes in float32 or float64")
        if dtype is not None and arr.dtype != dtype:
            if strict:
                raise TypeError(
                    f"{name} has dtype {arr.dtype} but {ref} is {dtype}: mixed float32/float64 inputs are an "
                    f"error, cast {name} explicitly (e.g. {name}.astype({lib}.{dtype}))"
                )
            arr = arr.astype(dtype)
    elif kind in "iub":
        arr = arr.astype(dtype if dtype is not None else np.float64)
    else:
        raise TypeError(f"{name} must be a real float array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    return arr


def _as_float_device(x: Any, name: str, dtype: np.dtype | None, ndim: int | tuple[int, ...] | None,
                     ref: str) -> Any:
    arr = to_cupy(x, name)
    import cupy

    arr = _float_rules(arr, name, dtype, ndim, ref, "cupy", strict=True)
    if arr.size and not bool(cupy.isfinite(arr).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return cupy.ascontiguousarray(arr)


def to_host_copy(x: Any, name: str) -> np.ndarray:
    """A NumPy copy of a GPU array (for small arguments validated on the host, e.g. targets)."""
    return to_cupy(x, name).get()


def _check_host(x: Any, name: str) -> None:
    if is_gpu_array(x):
        raise TypeError(
            f"{name} is a GPU array, but this MLP runs on a CPU engine; pass NumPy arrays "
            "(GPU arrays need the 'cuda' engine, see pyhessk.show_config())"
        )


def as_float(x: Any, name: str, dtype: np.dtype | None, ndim: int | tuple[int, ...] | None = None,
             ref: str = "theta", device: bool = False) -> Any:
    """A C-contiguous float array of the working dtype; ``dtype=None`` accepts float32 or float64 as given.

    ``ref`` names the argument the working dtype came from, for the mixed-precision error message.
    ``device=True`` (the ``cuda`` engine) accepts GPU arrays and returns them as CuPy arrays.
    """
    if device and is_gpu_array(x):
        return _as_float_device(x, name, dtype, ndim, ref)
    _check_host(x, name)
    has_dtype = hasattr(x, "dtype")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad argument
        raise TypeError(f"{name} must be an array of floats, got {type(x).__name__}") from exc
    arr = _float_rules(arr, name, dtype, ndim, ref, "np", strict=has_dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(arr)


def as_index(x: Any, name: str, size: int) -> np.ndarray:
    """A 1-D int64 array of indices in [0, size); ``IndexError`` when one is out of range."""
    _check_host(x, name)
    if isinstance(x, (list, tuple)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                            for v in x):
        # checked as Python integers: NumPy would turn those past int64 into floats or objects
        bad = next((v for v in x if not 0 <= v < size), None)
        if bad is not None:
            raise IndexError(f"{name}: index {bad} is out of range for {size} parameters (valid: 0 .. {size - 1})")
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a 1-D sequence of integer indices ({exc})") from exc
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer indices, got dtype {arr.dtype}")
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a 1-D index array, got shape {arr.shape}")
    flat = arr.ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= size):  # in the input's own dtype: no wrap-around
        bad = flat[(flat < 0) | (flat >= size)][0]
        raise IndexError(f"{name}: index {bad} is out of range for {size} parameters (valid: 0 .. {size - 1})")
    return flat.astype(np.int64)


def as_int(x: Any, name: str, low: int | None = None) -> int:
    """A Python int (not a bool), optionally at least ``low``."""
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        value = operator.index(x)
    except TypeError as exc:
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}") from exc
    if low is not None and value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return value


def as_real(x: Any, name: str, low: float | None = None, high: float | None = None, open_low: bool = False,
            open_high: bool = False) -> float:
    """A finite Python float in the given range."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    value = float(x)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (open_low and value == low)):
        raise ValueError(f"{name} must be {'>' if open_low else '>='} {low}, got {value}")
    if high is not None and (value > high or (open_high and value == high)):
        raise ValueError(f"{name} must be {'<' if open_high else '<='} {high}, got {value}")
    return value
