"""The GEMM ideal of each product: exactly the GEMMs it needs, with their real shapes, run back to back.

BENCH.md: count the GEMMs a product needs (ALGORITHMS.md §10) in units of the forward pass's per-layer
GEMMs — forward 1 per layer; gradient 3 (first layer 2); cached HVP 6 (first layer 2); fresh HVP 8
(first 3); cached GGN product 4 (first 2); fresh GGN = forward + cached GGN, 5 (first 3). The time of
exactly those GEMMs, on preallocated operands of the product's dtype, each one ``np.matmul(a, b, out=c)``
with NumPy's BLAS, is the product's "GEMM ideal". Elementwise work (activations, φ′ products, loss
heads), reductions (bias gradients), copies and Python overhead are *not* in the ideal: the ratio
product / ideal is how much of that a product adds to its unavoidable GEMM time.

Layout (SPEC: batch-major, as the NumPy engine uses): X is (n, n0), Z_l = A_{l−1} W_lᵀ with W_l stored
(n_l, n_{l−1}). A block of k directions keeps its R-quantities as (n, k, n_l), so a product with W_l is
one GEMM over n·k rows and a product with the stacked direction weights one GEMM with k·n_l columns. A
transposed operand (``ta``/``tb``) is stored the way the algorithm holds it and passed as a ``.T`` view,
which BLAS takes as a transpose flag (no copy).

For the entrywise-GNH reads that do no GEMM (exact entries, sampled estimates) the reference is a
*streaming* floor instead: the dot products the formula needs, on factors already gathered into
contiguous rows (``np.vecdot``); the gather itself is left out, so those ratios measure gather + overhead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_vecdot = getattr(np, "vecdot", None) or (lambda x, y: np.einsum("ij,ij->i", x, y))  # NumPy < 2.0


@dataclass(frozen=True)
class Gemm:
    """C (m, n) = op(A) (m, k) @ op(B) (k, n); ``ta``: A stored (k, m) and passed as A.T (likewise ``tb``)."""

    label: str
    m: int
    k: int
    n: int
    ta: bool = False
    tb: bool = False
    batch: int = 0  # > 0: a stack of `batch` independent GEMMs (np.matmul on 3-D operands)

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * max(self.batch, 1)

    def shape_str(self) -> str:
        a = f"({self.m}, {self.k})" + ("ᵀ" if self.ta else "")
        b = f"({self.k}, {self.n})" + ("ᵀ" if self.tb else "")
        pre = f"{self.batch}× " if self.batch else ""
        return f"{self.label}: {pre}{a} @ {b}"


@dataclass(frozen=True)
class Dots:
    """``count`` dot products of length ``length`` on contiguous rows (a streaming, memory-bound kernel)."""

    label: str
    count: int
    length: int

    @property
    def flops(self) -> int:
        return 2 * self.count * self.length

    def shape_str(self) -> str:
        return f"{self.label}: {self.count} dots of length {self.length}"


Kernel = Gemm | Dots


# ---- the GEMM lists, one function per pass (sizes = [n0, ..., nL], n samples, k directions) ----------
def forward(sizes: Sequence[int], n: int) -> list[Kernel]:
    """Z_l = A_{l−1} W_lᵀ: 1 per layer."""
    return [Gemm(f"fwd{l} A W^T", n, sizes[l - 1], sizes[l], tb=True) for l in range(1, len(sizes))]


def backward(sizes: Sequence[int], n: int) -> list[Kernel]:
    """dW_l = Δ_lᵀ A_{l−1}, and Γ_{l−1} = Δ_l W_l for l > 1: 2 per layer (l = 1: 1)."""
    out: list[Kernel] = []
    for l in range(len(sizes) - 1, 0, -1):
        n_prev, n_l = sizes[l - 1], sizes[l]
        out.append(Gemm(f"bwd{l} D^T A", n_l, n, n_prev, ta=True))
        if l > 1:
            out.append(Gemm(f"bwd{l} D W", n, n_l, n_prev))
    return out


def deltas(sizes: Sequence[int], n: int) -> list[Kernel]:
    """Γ_{l−1} = Δ_l W_l for l > 1 only: the part of the backward pass a Hessian product needs."""
    return [g for g in backward(sizes, n) if " D W" in g.label]


def r_forward(sizes: Sequence[int], n: int, k: int) -> list[Kernel]:
    """R{Z_l} = A_{l−1} [V_lᵀ…] + R{A_{l−1}} W_lᵀ: 2 per layer (l = 1: 1), k-wide."""
    out: list[Kernel] = []
    for l in range(1, len(sizes)):
        n_prev, n_l = sizes[l - 1], sizes[l]
        out.append(Gemm(f"rfwd{l} A V^T", n, n_prev, k * n_l))
        if l > 1:
            out.append(Gemm(f"rfwd{l} RA W^T", n * k, n_prev, n_l, tb=True))
    return out


def r_backward(sizes: Sequence[int], n: int, k: int) -> list[Kernel]:
    """HW_l = R{Δ_l}ᵀ A_{l−1} + Δ_lᵀ R{A_{l−1}}; R{Γ_{l−1}} = Δ_l V_l + R{Δ_l} W_l: 4 per layer (l = 1: 1)."""
    out: list[Kernel] = []
    for l in range(len(sizes) - 1, 0, -1):
        n_prev, n_l = sizes[l - 1], sizes[l]
        out.append(Gemm(f"rbwd{l} RD^T A", k * n_l, n, n_prev, ta=True))
        if l > 1:
            out.append(Gemm(f"rbwd{l} D^T RA", n_l, n, k * n_prev, ta=True))
            out.append(Gemm(f"rbwd{l} D V", n, n_l, k * n_prev))
            out.append(Gemm(f"rbwd{l} RD W", n * k, n_l, n_prev))
    return out


def gn_backward(sizes: Sequence[int], n: int, k: int) -> list[Kernel]:
    """GW_l = D_lᵀ A_{l−1}; D_{l−1} = (D_l W_l) ⊙ φ′: 2 per layer (l = 1: 1), k-wide."""
    out: list[Kernel] = []
    for l in range(len(sizes) - 1, 0, -1):
        n_prev, n_l = sizes[l - 1], sizes[l]
        out.append(Gemm(f"gn{l} D^T A", k * n_l, n, n_prev, ta=True))
        if l > 1:
            out.append(Gemm(f"gn{l} D W", n * k, n_l, n_prev))
    return out


def dense_assembly(sizes: Sequence[int], n: int, hessian: bool = True) -> list[Kernel]:
    """The GEMMs of ``Curvature.hessian()`` / ``gnh()`` assembled from per-sample terms (backends/numpy/dense.py,
    one chunk of n samples, biases): S_l = W_{l+1}ᵀ (S_{l+1} W_{l+1}) (2 per hidden layer), K_lm = K_l,m+1 W_{m+1}
    (1 per layer pair), ∂a_j/∂z_m = W_j ∂a_{j−1}/∂z_m (H only, 1 per pair j ≥ m + 2), and per block (l, m ≤ l)
    one (ñ_{l−1}·n_m, n) @ (n, ñ_{m−1}) GEMM per unit u of layer l; a diagonal block only for units w ≤ u
    (it is symmetric), counted here as its exact flops in one stack of n_l GEMMs of the mean width."""
    L = len(sizes) - 1
    out: list[Kernel] = []
    for l in range(L - 1, 0, -1):
        a, b = sizes[l + 1], sizes[l]
        out.append(Gemm(f"dense S{l} X = S W", a * n, a, b))
        out.append(Gemm(f"dense S{l} = W^T X", b, a, n * b, ta=True))
    if hessian:
        for m in range(1, L):
            for j in range(m + 2, L):
                out.append(Gemm(f"dense dA{j},{m}", sizes[j], sizes[j - 1], n * sizes[m]))
    for l in range(1, L + 1):
        for m in range(l, 0, -1):
            if m < l:
                out.append(Gemm(f"dense K{l},{m}", sizes[l] * n, sizes[m + 1], sizes[m]))
            units = (sizes[m] + 1) / 2 if m == l else sizes[m]
            rows = max(1, round((sizes[l - 1] + 1) * units))
            out.append(Gemm(f"dense B{l},{m}", rows, n, sizes[m - 1] + 1, ta=True, batch=sizes[l]))
    return out


def kernels_for(product: str, sizes: Sequence[int], n: int, k: int = 1, **kw: int) -> list[Kernel]:
    """The kernel list of one product (names as in the benchmark files)."""
    d = sizes[-1]
    L = len(sizes) - 1
    if product == "forward":
        return forward(sizes, n)
    if product == "gradient":
        return forward(sizes, n) + backward(sizes, n)
    if product in ("hvp_cached", "hvp_block"):
        return r_forward(sizes, n, k) + r_backward(sizes, n, k)
    if product == "hvp_fresh":  # no weight gradient: the product needs only the backward deltas
        return forward(sizes, n) + deltas(sizes, n) + r_forward(sizes, n, k) + r_backward(sizes, n, k)
    if product in ("ggn_cached", "ggn_block"):
        return r_forward(sizes, n, k) + gn_backward(sizes, n, k)
    if product == "ggn_fresh":
        return forward(sizes, n) + r_forward(sizes, n, k) + gn_backward(sizes, n, k)
    if product == "hessian_dense":
        return dense_assembly(sizes, n)
    if product == "gnh_precompute":
        # S_l = (S_{l+1} W_{l+1}) ⊙ φ′_l for l = L−1 … 1: one GEMM with n·d rows each (d layer-GEMMs)
        return [Gemm(f"gnh S{l} = S{l + 1} W", n * d, sizes[l + 1], sizes[l]) for l in range(L - 1, 0, -1)]
    if product == "gnh_block":
        bi, bj = kw["bi"], kw["bj"]
        return [Gemm("gnh X_I^T Y_J", bi, n * d, bj, ta=True)]
    if product == "gnh_diagonal":
        # diag(G)_{W_l} = (ν_l²)ᵀ (A_{l−1}²): one (n_l, n) @ (n, n_{l−1}) GEMM per layer
        return [Gemm(f"gnh diag{l} nu2^T A2", sizes[l], n, sizes[l - 1], ta=True) for l in range(1, L + 1)]
    if product == "gnh_column":
        m = kw.get("m", 1)
        out = []
        for l in range(1, L + 1):
            out.append(Gemm(f"gnh col{l} u^T S", m, d, sizes[l], batch=n))
            out.append(Gemm(f"gnh col{l} T^T A", m * sizes[l], n, sizes[l - 1], ta=True))
        return out
    if product in ("ggn_factored", "ggn_factored_block"):
        # per layer P_l = A_{l−1}V_lᵀ and the weight block Q_lᵀ A_{l−1} (2 per layer), plus the two
        # contractions with S_l, counted as what they are: n·d·n_l·k multiply-adds each, batched over samples
        out = []
        for l in range(1, L + 1):
            out.append(Gemm(f"fac{l} A V^T", n, sizes[l - 1], k * sizes[l]))
            out.append(Gemm(f"fac{l} S^T P", k, sizes[l], d, batch=n))
        for l in range(L, 0, -1):
            out.append(Gemm(f"fac{l} S u", k, d, sizes[l], batch=n))
            out.append(Gemm(f"fac{l} Q^T A", k * sizes[l], n, sizes[l - 1], ta=True))
        return out
    if product == "gnh_entries":
        return [Dots("gnh entries x.y", kw["m"], n * d)]
    if product == "gnh_estimate":
        s = kw["s"]
        if not kw.get("sampled", s < n):  # the library returns exact entries then (SPEC §3, GnhEntries.estimate)
            return [Dots("gnh entries x.y", kw["m"], n * d)]
        return [Dots("gnh weights |x||y|", kw["m"], n), Dots("gnh sampled x.y", kw["m"], s * d)]
    raise KeyError(f"no kernel list for product {product!r}")


class Ideal:
    """Preallocated operands for a kernel list, and a callable that runs the kernels back to back."""

    def __init__(self, kernels: Sequence[Kernel], dtype: str | np.dtype = "float32", seed: int = 0) -> None:
        self.kernels = list(kernels)
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)

        def rand(shape: tuple[int, ...]) -> np.ndarray:
            return rng.standard_normal(shape, dtype=np.float64).astype(self.dtype)

        self._ops: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._dots: list[tuple[np.ndarray, np.ndarray]] = []
        for g in self.kernels:
            if isinstance(g, Dots):
                self._dots.append((rand((g.count, g.length)), rand((g.count, g.length))))
                continue
            lead = (g.batch,) if g.batch else ()
            a = rand(lead + ((g.k, g.m) if g.ta else (g.m, g.k)))
            b = rand(lead + ((g.n, g.k) if g.tb else (g.k, g.n)))
            if g.ta:
                a = np.swapaxes(a, -1, -2)
            if g.tb:
                b = np.swapaxes(b, -1, -2)
            self._ops.append((a, b, np.empty(lead + (g.m, g.n), dtype=self.dtype)))

    @property
    def flops(self) -> int:
        return sum(g.flops for g in self.kernels)

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for t in self._ops for x in t) + sum(x.nbytes for t in self._dots for x in t)

    def __call__(self) -> None:
        for a, b, c in self._ops:
            np.matmul(a, b, out=c)
        for x, y in self._dots:
            _vecdot(x, y)


def forward_units(kernels: Sequence[Kernel], sizes: Sequence[int], n: int) -> float:
    """The kernels' flops in units of one forward pass's GEMM flops (a forward = 1.0)."""
    fwd = sum(g.flops for g in forward(sizes, n))
    return sum(g.flops for g in kernels) / fwd


def gemm_count(kernels: Sequence[Kernel]) -> int:
    return sum(1 for g in kernels if isinstance(g, Gemm))


def num_samples(eps: float, delta: float) -> int:
    """s = ⌈1/(δ ε²)⌉, the sample count of ``GnhEntries.estimate``."""
    return math.ceil(1.0 / (delta * eps * eps))
