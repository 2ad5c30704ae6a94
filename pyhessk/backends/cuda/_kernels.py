"""The registry of the CUDA kernels in ``csrc/cuda/kernels`` and the launch-shape arithmetic.

Every kernel provider (NVRTC through CuPy, the nvcc-built ``pyhessk._core_cuda``, and the host emulation
the tests use on machines without a GPU) reads its argument list from ``KERNELS``; the C++ signatures in
``csrc/cuda/kernels/*.cuh`` follow the same order.

Argument kinds: ``i`` index (int64), ``s`` a scalar of the working dtype, ``u`` uint64, ``p`` a pointer to
the working dtype, ``I`` a pointer to int64, ``D`` a pointer to float64 (null pointers are ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import _spec

THREADS = 256          # csrc/cuda/kernels/launch.cuh kThreads
REDUCE_THREADS = 256   # kReduceThreads
MAX_BLOCKS = 65535 * 8  # kMaxBlocks
SUM_COLS = 32           # kSumCols: columns per block of the column sums
SUM_ROWS = 256          # kSumRows: rows per block of their first pass


@dataclass(frozen=True)
class KernelSpec:
    """One kernel: its template tag (None, "act" or "loss"), argument kinds and how it is launched.

    ``per_item`` kernels run one block of ``REDUCE_THREADS`` per item (an entry of G, a row or a tile of
    columns to sum), so their grid is the item count and their arguments do not start with the element count; the others are grid-stride
    loops whose first argument is the element count.
    """

    name: str
    tag: str | None
    args: str
    per_item: bool = False


KERNELS: dict[str, KernelSpec] = {k.name: k for k in (
    KernelSpec("activation_kernel", "act", "ipppp"),
    KernelSpec("activation_value_kernel", "act", "ipp"),
    KernelSpec("add_bias_kernel", None, "ipp"),
    KernelSpec("rforward_kernel", None, "iipippp"),
    KernelSpec("rbackward_kernel", None, "iippppp"),
    KernelSpec("scale_rows_kernel", None, "iipp"),
    KernelSpec("hadamard_kernel", None, "ppp"),
    KernelSpec("axpy_kernel", None, "spp"),
    KernelSpec("add_scalar_kernel", None, "sp"),
    KernelSpec("square_kernel", None, "pp"),
    KernelSpec("pack_rows_kernel", None, "piiip"),
    KernelSpec("pack_cols_kernel", None, "piiip"),
    KernelSpec("assemble_kernel", None, "iiipppsip"),
    KernelSpec("loss_head_kernel", "loss", "ippppsD"),
    KernelSpec("output_hessian_kernel", "loss", "iippsp"),
    KernelSpec("output_factor_kernel", "loss", "iipp"),
    KernelSpec("scale_sensitivity_kernel", None, "iiipp"),
    KernelSpec("column_norm_kernel", None, "ipp"),
    KernelSpec("transpose_kernel", None, "iipp"),
    KernelSpec("gather_kernel", None, "iippIIp"),
    KernelSpec("contract_kernel", None, "iiippp"),
    KernelSpec("scatter_columns_kernel", None, "iipip"),
    KernelSpec("column_partials_kernel", None, "iipD", per_item=True),
    KernelSpec("column_finish_kernel", None, "iiiDp", per_item=True),
    KernelSpec("row_sums_kernel", None, "ipsp", per_item=True),
    KernelSpec("entries_kernel", None, "iippIIIIpsp", per_item=True),
    KernelSpec("sample_kernel", None, "iiiuipppIIIIIIpsDp", per_item=True),
)}

DTYPE_NAMES = {"float32": "float", "float64": "double"}


def tag_values(tag: str | None) -> list[int | None]:
    """The template values a tag ranges over: every activation id, every loss id, or [None]."""
    if tag == "act":
        return [a.id for a in _spec.ACTIVATIONS]
    if tag == "loss":
        return [spec.id for spec in _spec.LOSSES]
    return [None]


def name_expression(name: str, dtype: str, tag_value: int | None) -> str:
    """The C++ name of one instantiation, e.g. ``pyhessk::cuda::activation_kernel<float, 1>``."""
    spec = KERNELS[name]
    if (spec.tag is None) != (tag_value is None):
        raise ValueError(f"kernel {name} takes {'no' if spec.tag is None else 'a ' + spec.tag} template tag")
    ctype = DTYPE_NAMES[dtype]
    targs = ctype if tag_value is None else f"{ctype}, {int(tag_value)}"
    return f"pyhessk::cuda::{name}<{targs}>"


def all_name_expressions(dtype: str) -> list[str]:
    """Every instantiation the engine may launch for one dtype."""
    return [name_expression(k.name, dtype, v) for k in KERNELS.values() for v in tag_values(k.tag)]


def launch_shape(name: str, total: int) -> tuple[int, int]:
    """(blocks, threads per block) for ``total`` elements (or items, for per-item kernels); (0, 0) if empty."""
    if total < 0:
        raise ValueError(f"{name}: negative launch size {total}")
    if total == 0:
        return 0, 0
    if KERNELS[name].per_item:
        if total > 2**31 - 1:
            raise ValueError(f"{name}: {total} items exceed the grid limit; split the call")
        return total, REDUCE_THREADS
    return min(-(-total // THREADS), MAX_BLOCKS), THREADS
