"""Type stub of pyhessk._core_cuda (built with PYHESSK_BUILD_CUDA=1; see docs/cuda.md)."""

from typing import Any

class CudaError(RuntimeError): ...

def launch(name: str, dtype: int, tag: int, total: int, blocks: int, threads: int, stream: int,
           args: list[Any]) -> None:
    """Launch one kernel of csrc/cuda/kernels (dtype 0 float / 1 double, tag −1 for none) on a stream."""

def gemm(ta: bool, tb: bool, M: int, N: int, K: int, alpha: float, A: Any, lda: int, B: Any, ldb: int, beta: float,
         C: Any, ldc: int, stream: int, allow_tf32: bool, batch: int = 1, sA: int = 0, sB: int = 0,
         sC: int = 0) -> None:
    """Row-major C = alpha op(A) op(B) + beta C with cuBLAS on a stream (arrays with __cuda_array_interface__);
    batch > 1: strided batched, operand b starting sA·b, sB·b, sC·b elements on."""

def kernel_names() -> list[str]: ...
def build_info() -> dict[str, str]: ...
def activation_ids() -> dict[str, int]: ...
def loss_ids() -> dict[str, int]: ...
