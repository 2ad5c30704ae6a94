"""The engine boundary: what every pyhessk engine implements and the API layer calls.

The API layer (``pyhessk.mlp``, ``pyhessk.curvature``) validates arrays, then calls only the
primitive passes below. Engines receive contiguous arrays of one floating dtype (float32 or float64),
parameter blocks in the SPEC layout, blocks of vectors as 2-D ``(N, k)`` arrays, and targets already in
canonical form ``T`` of shape ``(n, d)`` (class labels one-hot). They never validate user input again.

Shapes used below: n samples, d = sizes[-1] outputs, N parameters, k vectors in a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

Array = Any  # an engine's array type (numpy.ndarray on the CPU engines)


@dataclass(frozen=True)
class ModelSpec:
    """Everything an engine needs to know about an MLP; hashable so engines may cache on it.

    Attributes:
        sizes: layer widths [n0, n1, ..., nL].
        activations: canonical activation name of each hidden layer (length L − 1).
        loss: canonical loss name.
        l2: weight-decay coefficient λ (weights only).
        reduction: "mean" or "sum".
        bias: whether layers have biases.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    l2: float
    reduction: str
    bias: bool

    @property
    def num_layers(self) -> int:
        return len(self.sizes) - 1

    @cached_property
    def offsets(self) -> tuple[tuple[int, int, int], ...]:
        """Per layer l = 1..L: (start of W_l, start of b_l, end of the layer's block) in θ."""
        out, pos = [], 0
        for n_prev, n_l in zip(self.sizes[:-1], self.sizes[1:]):
            w_start, b_start = pos, pos + n_l * n_prev
            pos = b_start + (n_l if self.bias else 0)
            out.append((w_start, b_start, pos))
        return tuple(out)

    @property
    def num_params(self) -> int:
        return self.offsets[-1][2]

    def scale(self, n: int) -> float:
        """The factor in front of the sum over samples: 1/n for "mean", 1 for "sum"."""
        return 1.0 / n if self.reduction == "mean" else 1.0

    def layer_views(self, theta: np.ndarray, l: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Views of W_l (n_l, n_{l−1}, *rest) and b_l (n_l, *rest) inside θ (N, *rest); l counts from 1."""
        w0, b0, end = self.offsets[l - 1]
        n_prev, n_l = self.sizes[l - 1], self.sizes[l]
        rest = theta.shape[1:]
        W = theta[w0:b0].reshape(n_l, n_prev, *rest)
        b = theta[b0:end] if self.bias else None
        return W, b

    def decode(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split flat parameter indices into (layer l ≥ 1, unit row i, input column j; j = −1 for a bias)."""
        starts = np.array([o[0] for o in self.offsets])
        layer = np.searchsorted(starts, idx, side="right")
        local = idx - starts[layer - 1]
        n_prev = np.array(self.sizes[:-1])[layer - 1]
        n_w = np.array([(o[1] - o[0]) for o in self.offsets])[layer - 1]
        is_w = local < n_w
        row = np.where(is_w, local // n_prev, local - n_w)
        col = np.where(is_w, local % n_prev, -1)
        return layer, row, col

    @cached_property
    def _weight_mask(self) -> np.ndarray:
        mask = np.zeros(self.num_params)
        for w0, b0, _ in self.offsets:
            mask[w0:b0] = 1
        mask.flags.writeable = False
        return mask

    def weight_mask(self, dtype: Any = np.float64) -> np.ndarray:
        """1 on the weight coordinates of θ, 0 on the biases (the projector P_W of SPEC §1); read-only,
        built once per architecture."""
        return self._weight_mask.astype(dtype, copy=False)


class Linearization(Protocol):
    """An engine's cache of one batch at one θ: what the products need (activations, φ′, φ″, residuals).

    Attributes:
        loss: the objective L(θ) of SPEC §1 (a Python float).
        grad: ∇L(θ), shape (N,), or None until ``Backend.backward`` has run.
        n: number of samples.
        dtype: the working dtype (float32 or float64).
    """

    loss: float
    grad: Array | None
    n: int
    dtype: np.dtype


class RForward(Protocol):
    """The R-forward pass for a block V: ``output`` is R{f} = J V with shape (n, k, d)."""

    output: Array


class GnhFactors(Protocol):
    """The precomputation of SPEC §3: activations a_{l,k}, sensitivities S_{l,k} (d × n_l), norms ν."""


class Backend(Protocol):
    """The primitive passes of one engine, and the four products the API calls (see ``BackendBase``).

    Every array argument has the linearization's dtype.
    """

    name: str

    def forward(self, model: ModelSpec, theta: Array, X: Array) -> Array:
        """Network output F = f(X; θ), shape (n, d)."""
        ...

    def linearize(self, model: ModelSpec, theta: Array, X: Array, T: Array, backward: bool = True) -> Linearization:
        """Fused forward (+ gradient backward when ``backward``) pass, keeping what products need.

        The engine must own (copy) whatever it keeps: later changes to the arguments may not alter it.
        """
        ...

    def backward(self, lin: Linearization) -> None:
        """Run the gradient backward pass on a forward-only linearization (no-op if already done)."""
        ...

    def r_forward(self, lin: Linearization, V: Array) -> RForward:
        """Pearlmutter's R-forward pass (a JVP) for V of shape (N, k): R{Z_l}, R{A_l} and R{f} = J V."""
        ...

    def output_hessian(self, lin: Linearization, R: Array) -> Array:
        """s·H_out·R per sample for R of shape (n, k, d), s being the reduction's 1/n or 1."""
        ...

    def r_backward(self, lin: Linearization, rf: RForward, V: Array) -> Array:
        """Exact Hessian block H V (N, k) from the R-forward state (needs the backward pass)."""
        ...

    def gn_backward(self, lin: Linearization, U: Array, V: Array | None = None) -> Array:
        """Jᵀ U summed over samples for U of shape (n, k, d) → (N, k); if V is given, adds λ·P_W·V."""
        ...

    def hvp(self, lin: Linearization, V: Array) -> Array:
        """H V (N, k) → (N, k); ``BackendBase`` composes it from the primitives."""
        ...

    def gnvp(self, lin: Linearization, V: Array) -> Array:
        """G V (N, k) → (N, k), including λ P_W V."""
        ...

    def jvp(self, lin: Linearization, V: Array) -> Array:
        """J V (N, k) → (n, k, d); the result may be a view of engine memory, valid until the next call."""
        ...

    def vjp(self, lin: Linearization, U: Array) -> Array:
        """Jᵀ U (n, k, d) → (N, k), no λ term."""
        ...

    def dense_curvature(self, lin: Linearization, kind: str) -> Array:
        """Optional: the dense H (``kind="hessian"``) or G (``"gnh"``), (N, N), including λ P_W, assembled
        from per-sample second-order terms (``backends/numpy/dense.py``). Without it, the API layer builds
        the matrix from block products with the identity."""
        ...

    def empirical_fisher_diagonal(self, lin: Linearization) -> Array:
        """s·Σ_k ∇ℓ_k ⊙ ∇ℓ_k + λ P_W (N,) from the backward pass's per-sample Δ_l (run first if needed): per
        layer (Δ_l ⊙ Δ_l)ᵀ (A_{l−1} ⊙ A_{l−1}) / s, one layer-GEMM, and the column sums of Δ_l ⊙ Δ_l / s for
        the biases (Δ_l carries the scale s, so the per-sample gradients are Δ_l / s)."""
        ...

    def gnh_precompute(self, lin: Linearization) -> GnhFactors:
        """Store a_{l,k}, S_{l,k} = C_kᵀ ∂f_k/∂z_l and ν_{l,k,i} = ‖S_{l,k}[:, i]‖ (SPEC §3)."""
        ...

    def gnh_entries(self, fac: GnhFactors, rows: np.ndarray, cols: np.ndarray) -> Array:
        """Exact G[rows[t], cols[t]] for int64 index arrays of equal length m → (m,)."""
        ...

    def gnh_block(self, fac: GnhFactors, I: np.ndarray, J: np.ndarray) -> Array:
        """Exact G[I × J] → (|I|, |J|), one GEMM over the gathered factors."""
        ...

    def gnh_columns(self, fac: GnhFactors, J: np.ndarray) -> Array:
        """Exact columns G[:, J] → (N, |J|)."""
        ...

    def gnh_diagonal(self, fac: GnhFactors) -> Array:
        """Exact diag(G) → (N,), from the norms ν only."""
        ...

    def gnh_gnvp(self, fac: GnhFactors, V: Array, carry: Sequence[bool] | None = None) -> Array:
        """G V (N, k) → (N, k) from the stored factors alone (2 layer-GEMMs per layer), including λ P_W V.

        ``carry`` (L flags, the last False; None: none) marks hidden layers l whose R-values take the
        R-forward step through W_{l+1} instead of the two passes over S_l (``curvature.factored_gnvp_plan``
        picks them); the result is the same G V up to rounding."""
        ...

    def gnh_layer_factors(self, fac: GnhFactors, l: int) -> tuple[Array, Array]:
        """Read-only views of layer l's stored factors: S_l as (n_l, n, d) with S_l[i, k, :] = S_{l,k}[:, i]
        (any strides) and A_{l−1} as (n, n_{l−1}); valid while ``fac`` lives (the sample-space Gram uses them)."""
        ...

    def gnh_sample(self, fac: GnhFactors, rows: np.ndarray, cols: np.ndarray, s: int, seed: int | None) -> Array:
        """Importance-sampled estimates of G[rows[t], cols[t]] with s draws each (SPEC §3) → (m,)."""
        ...

    def gnh_sample_groups(self, fac: GnhFactors, rows: np.ndarray, cols: np.ndarray, s: int, groups: int,
                          seed: int | None) -> Array:
        """``groups`` independent estimates of s draws each per entry → (groups, m), for the median of
        means; an engine builds each entry's sampling distribution once for all groups (``BackendBase``
        has a fallback that does not)."""
        ...


#: The factored product's route model (``curvature.factored_gnvp_plan``) prices one byte of GNH factors
#: streamed from memory in GEMM flops: FLOPS_PER_BYTE for BLAS kernels of AVX2 width, FLOPS_PER_BYTE_AVX512
#: where OpenBLAS runs AVX-512 ones (GEMMs measured 1.56× faster on the same machine, streams no faster).
FLOPS_PER_BYTE = 8.0
FLOPS_PER_BYTE_AVX512 = 12.5


class BackendBase:
    """Composite products built from the primitives; an engine may override any of them with a fused pass.

    The API layer calls these four, so an engine that fuses (e.g. a compiled R-forward + R-backward that
    keeps the R-quantities in its own workspace) replaces one method without changing the API.
    """

    #: GEMM flops per streamed byte of GNH factors in the factored product's route model; None: the price
    #: of the host BLAS this process runs (``curvature.blas_flops_per_byte``), right for the CPU engines.
    factor_byte_flops: float | None = None
    #: The time of this engine's passes over the factors (the contractions with S_l, a carried layer's
    #: sweeps) relative to the C++ kernels', which the route model's prices were fitted to: it scales every
    #: term of the factored route but its GEMMs (bench/results/factored-routes-<engine>-*).
    factor_pass_cost: float = 1.0

    def hvp(self, lin: Linearization, V: Array) -> Array:
        """H V for V (N, k) → (N, k): R-forward then R-backward (6 layer-GEMMs per layer, 2 for the first)."""
        return self.r_backward(lin, self.r_forward(lin, V), V)  # type: ignore[attr-defined]

    def gnvp(self, lin: Linearization, V: Array) -> Array:
        """G V for V (N, k) → (N, k): R-forward, H_out, Gauss–Newton backward (4 per layer, 2 for the first)."""
        rf = self.r_forward(lin, V)  # type: ignore[attr-defined]
        return self.gn_backward(lin, self.output_hessian(lin, rf.output), V)  # type: ignore[attr-defined]

    def jvp(self, lin: Linearization, V: Array) -> Array:
        """J V for V (N, k) → (n, k, d)."""
        return self.r_forward(lin, V).output  # type: ignore[attr-defined]

    def vjp(self, lin: Linearization, U: Array) -> Array:
        """Jᵀ U summed over samples for U (n, k, d) → (N, k)."""
        return self.gn_backward(lin, U)  # type: ignore[attr-defined]

    def gnh_sample_groups(self, fac: GnhFactors, rows: np.ndarray, cols: np.ndarray, s: int, groups: int,
                          seed: int | None) -> Array:
        """Fallback: one ``gnh_sample`` call per group (each rebuilds the O(n) sampling distribution)."""
        seeds = np.random.SeedSequence(seed).generate_state(groups, np.uint64)
        return np.stack([self.gnh_sample(fac, rows, cols, s, int(g)) for g in seeds])  # type: ignore[attr-defined]
