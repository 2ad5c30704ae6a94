"""Curvature snapshots: exact products with H, G and J at one (θ, X, Y), and entrywise GNH access."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import as_float, as_index, as_int, as_real, namespace_of, to_host
from .backends._base import FLOPS_PER_BYTE, FLOPS_PER_BYTE_AVX512

if TYPE_CHECKING:
    from .mlp import MLP

DEFAULT_MAX_PARAMS = 8192
_MAX_SAMPLES = 2**63 - 1
#: The choice between the plain and the factored Gauss–Newton product prices, in GEMM flops, one byte of
#: GNH factors streamed from memory (when they exceed _CACHED_BYTES; below, they stay in cache) and one flop
#: of the (vectorized, not blocked) contractions with them, times √k: a block's GEMMs run faster per flop
#: than a single vector's, its contractions do not. Fitted to the C++ engine's measurements of both routes
#: on the BENCH.md configs, k = 1 and blocks (bench/results/cpp-*: the rows "GGN product …"); a heuristic
#: for one machine, pinned by tests/test_gnh_scale.py. _FLOPS_PER_BYTE holds for BLAS kernels of AVX2 width
#: (OpenBLAS's Haswell core); where NumPy's OpenBLAS runs AVX-512 kernels, the same machine's GEMMs ran 1.56×
#: faster (M's four layer GEMMs: 212 → 330 GFLOP/s) and its streams no faster, so a byte is priced
#: _FLOPS_PER_BYTE_AVX512 (bench/results/factored-routes-cpp-epyc2c-skx-*). An engine may declare its own
#: price (``factor_byte_flops``; the cuda engine does) and the cost of its passes against the C++ kernels'
#: (``factor_pass_cost``; BackendBase).
_FLOPS_PER_BYTE = FLOPS_PER_BYTE
_FLOPS_PER_BYTE_AVX512 = FLOPS_PER_BYTE_AVX512
_CONTRACTION_FLOP = 1.5
_CACHED_BYTES = 1 << 20
#: The narrowest GEMM the route model prices by its flops: a carried layer l with n_{l+1} below it costs what
#: n_{l+1} = 8 would (BLAS kernels work in tiles about 8 wide; measured: carrying into P's and S's 1-unit
#: output layer was 4–13% slower than contracting, bench/results/factored-routes-*).
_MIN_GEMM_WIDTH = 8
_SAMPLING_METHODS = ("mean", "median_of_means")
#: ``estimate`` returns exact entries when they are predicted cheaper than sampling. Costs in units of one
#: sample's share of building the sampling distribution (n of them per entry): an exact entry costs
#: _EXACT_COST per element of its n·d-long dot product (a vectorized stream), a draw _DRAW_COST per output
#: (the d factor values of a random sample). Fitted to the C++ engine's per-entry times
#: (bench/results/sampler-scaling-*, 2026-11-23, and the same sweep at d = 2, 3, 5): 0.5–0.7 ns per sample
#: for the distribution, 0.6–3 ns per draw and output (the factor rows cached, or not), 0.13–0.46 ns per
#: element of an exact entry. With d = 10, sampling pays once n is above about 15 times the draws
#: (measured: exact at n = 500, even at 1,000, sampled 1.3× faster at 2,000 with 112 draws); with d ≤ 3 only
#: at n far above the draws.
_EXACT_COST = 0.5
_DRAW_COST = 6.0
_DENSE_METHODS = ("auto", "assemble", "products")


class Curvature:
    r"""The linearization of an MLP at one (θ, X, Y): loss, gradient and every curvature product.

    Made by ``MLP.linearize``. It is a snapshot: it owns copies of θ, X and Y (through the engine's
    cache), so later changes to those arrays do not change its answers. Each product reuses the cached
    forward and backward passes: a Hessian-vector product costs 6 layer-GEMMs per layer (2 for the first),
    a Gauss–Newton product 4 (2 for the first), and a block of k vectors runs through the same GEMMs with
    k-times wider operands.

    Vectors use the layout of θ: ``V`` of shape (N,) or a block (N, k), in θ's dtype.

    Example (a linear model with mse: H = G = (1/n) Σ_k [x_k; 1][x_k; 1]ᵀ):
        >>> import numpy as np, pyhessk as hk
        >>> X = np.arange(6.0).reshape(3, 2); Y = np.zeros((3, 1))
        >>> net = hk.MLP([2, 1], loss="mse", backend="numpy")
        >>> c = net.linearize(net.init(seed=0), X, Y)
        >>> Xb = np.hstack([X, np.ones((3, 1))])
        >>> bool(np.allclose(c.hessian(), Xb.T @ Xb / 3))
        True
    """

    def __init__(self, net: MLP, lin: Any) -> None:
        self._net = net
        self._engine = getattr(lin, "engine", None) or net._engine  # backend="auto" may pick per call
        self._device = self._engine.name == "cuda"  # GPU arrays accepted (and returned) as CuPy
        self._model = net.spec
        self._lin = lin
        self._dtype = np.dtype(lin.dtype)
        self._entries: GnhEntries | None = None
        self._solver: tuple[float, Any] | None = None  # (damping, the factorised Woodbury solver)

    # ---- scalars and the gradient -------------------------------------------------------------------
    @property
    def loss(self) -> float:
        """The objective L(θ) on this batch."""
        return float(self._lin.loss)

    @property
    def grad(self) -> np.ndarray:
        """∇L(θ), shape (N,) (a fresh array each time)."""
        self._engine.backward(self._lin)
        return self._lin.grad.copy()

    @property
    def num_params(self) -> int:
        return self._model.num_params

    @property
    def num_samples(self) -> int:
        return self._lin.n

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def net(self) -> MLP:
        return self._net

    # ---- validation helpers -------------------------------------------------------------------------
    def _block(self, V: Any, name: str = "V") -> tuple[np.ndarray, bool]:
        v = as_float(V, name, self._dtype, ndim=(1, 2), device=self._device)
        N = self._model.num_params
        if v.shape[0] != N:
            raise ValueError(f"{name} must have shape ({N},) or ({N}, k) to match num_params, got {v.shape}")
        return (v[:, None], True) if v.ndim == 1 else (v, False)

    @staticmethod
    def _unblock(out: np.ndarray, single: bool) -> np.ndarray:
        return out[:, 0] if single else out

    def _home(self) -> Any:
        """The array library of the answers that no argument array decides (index-driven GNH reads, dense
        matrices): CuPy for a linearization of GPU arrays on the cuda engine, NumPy otherwise."""
        return np if getattr(self._lin, "host", True) else self._engine.xp

    # ---- products ----------------------------------------------------------------------------------
    def hvp(self, V: Any) -> np.ndarray:
        """Exact Hessian products H V (Pearlmutter's R-operator): V (N,) or (N, k) → same shape."""
        v, single = self._block(V)
        if v.shape[1] == 0:
            return namespace_of(v).empty_like(v)
        return self._unblock(self._engine.hvp(self._lin, v), single)

    def gnvp(self, V: Any) -> np.ndarray:
        """Gauss–Newton products G V = Jᵀ H_out J V (+ λ P_W V): V (N,) or (N, k) → same shape.

        Needs neither the gradient's backward pass nor the Hessian's second-order terms. Once
        ``gnh_entries()`` has stored the GNH factors, the product is taken from them instead (no R-forward
        and no backward pass, 2 layer-GEMMs per layer instead of 4) whenever that is predicted to be
        faster for this architecture and k; both give the same G V up to rounding.
        """
        v, single = self._block(V)
        if v.shape[1] == 0:
            return namespace_of(v).empty_like(v)
        if self._entries is not None:
            carry, factored, plain = self._entries._plan(v.shape[1])
            if factored < plain:
                return self._unblock(self._engine.gnh_gnvp(self._entries._fac, v, carry), single)
        return self._unblock(self._engine.gnvp(self._lin, v), single)

    def jvp(self, V: Any) -> np.ndarray:
        """Jacobian products J V of the network output: V (N,) → (n, d); V (N, k) → (n, d, k)."""
        v, single = self._block(V)
        n, d = self._lin.n, self._model.sizes[-1]
        if v.shape[1] == 0:
            return namespace_of(v).empty((n, d, 0), dtype=self._dtype)
        out = self._engine.jvp(self._lin, v)  # (n, k, d)
        return out[:, 0, :].copy() if single else namespace_of(out).ascontiguousarray(out.transpose(0, 2, 1))

    def vjp(self, U: Any) -> np.ndarray:
        """Jᵀ U summed over samples (no 1/n, no λ): U (n, d) → (N,); U (n, d, k) → (N, k)."""
        u = as_float(U, "U", self._dtype, ndim=(2, 3), device=self._device)
        n, d = self._lin.n, self._model.sizes[-1]
        if u.shape[:2] != (n, d):
            raise ValueError(f"U must have shape ({n}, {d}) or ({n}, {d}, k) to match the batch and outputs, got {u.shape}")
        single = u.ndim == 2
        xp = namespace_of(u)
        if not single and u.shape[2] == 0:
            return xp.empty((self._model.num_params, 0), dtype=self._dtype)
        blk = u[:, None, :] if single else xp.ascontiguousarray(u.transpose(0, 2, 1))
        return self._unblock(self._engine.vjp(self._lin, blk), single)

    def empirical_fisher_diagonal(self) -> np.ndarray:
        r"""The empirical Fisher diagonal s·Σ_k ∇ℓ_k ⊙ ∇ℓ_k (+ λ on the weights), (N,), at the objective's scale.

        From the backward pass's per-sample Δ_l (run first if needed), never forming per-sample gradients:
        per layer one GEMM :math:`(Δ_l ⊙ Δ_l)ᵀ (A_{l-1} ⊙ A_{l-1})` and the column sums of Δ_l ⊙ Δ_l for
        the biases. Martens' Hessian-free preconditioner (ALGORITHMS §7.1). Unlike ``G``, it is not a curvature
        of the loss: it is built from first derivatives alone and vanishes where every ∇ℓ_k does.
        ``pyhessk.bishop.empirical_fisher_diagonal`` computes the same numbers in float64 from scratch.
        """
        return self._engine.empirical_fisher_diagonal(self._lin)

    # ---- dense matrices ------------------------------------------------------------------------------
    def _dense(self, kind: str, max_params: int, chunk_size: int | None, method: str) -> np.ndarray:
        N = self._model.num_params
        max_params = as_int(max_params, "max_params", low=1)
        if method not in _DENSE_METHODS:
            raise ValueError(f"method must be one of {_DENSE_METHODS}, got {method!r}")
        if N > max_params:
            raise ValueError(
                f"the dense matrix would be {N} × {N} ({N * N * self._dtype.itemsize / 2**30:.2f} GiB); "
                f"num_params {N} exceeds max_params={max_params}: raise max_params to build it anyway"
            )
        assemble = getattr(self._engine, "dense_curvature", None)
        if method == "assemble" and assemble is None:
            raise ValueError(f"method='assemble': the {self._engine.name!r} engine has no assembly; use 'products'")
        if chunk_size is not None:
            chunk_size = as_int(chunk_size, "chunk_size", low=1)
        if assemble is not None and method != "products":
            return assemble(self._lin, kind)
        product = self.hvp if kind == "hessian" else self.gnvp
        if chunk_size is None:
            width = self._lin.n * sum(self._model.sizes[1:])
            chunk_size = max(1, min(N, (1 << 24) // max(width, 1)))
        xp = self._home()  # the unit vectors, the products and the matrix live there (the device for GPU arrays)
        out = xp.empty((N, N), dtype=self._dtype)
        for start in range(0, N, chunk_size):
            stop = min(N, start + chunk_size)
            E = xp.zeros((N, stop - start), dtype=self._dtype)
            E[xp.arange(start, stop), xp.arange(stop - start)] = 1
            out[:, start:stop] = product(E)
        return out

    def hessian(self, max_params: int = DEFAULT_MAX_PARAMS, chunk_size: int | None = None,
                method: str = "auto") -> np.ndarray:
        """The dense Hessian (N, N).

        ``method="assemble"`` sums per-sample second-order terms (``backends/numpy/dense.py``): about
        2·n flops per entry of H plus O(n Σ_l n_l² n_m) per-sample work, in chunks of samples of bounded
        memory. ``method="products"`` builds H from block products H·I, ``chunk_size`` columns at a time
        (about 12·n·N flops per column: several times more). ``"auto"`` assembles when the engine can
        (all engines do: NumPy, Numba, C++, and CUDA through the NumPy statement run on CuPy) and uses
        products otherwise.

        Raises:
            ValueError: if N > ``max_params`` (default 8192); raise it knowingly: memory is N² floats.
                Also for an unknown ``method``, or ``"assemble"`` on an engine without it.
        """
        return self._dense("hessian", max_params, chunk_size, method)

    def gnh(self, max_params: int = DEFAULT_MAX_PARAMS, chunk_size: int | None = None,
            method: str = "auto") -> np.ndarray:
        """The dense Gauss–Newton Hessian (N, N); the same methods and guard as ``hessian``."""
        return self._dense("gnh", max_params, chunk_size, method)

    # ---- linear operators ----------------------------------------------------------------------------
    def linear_operator(self, kind: str = "hessian", damping: float = 0.0) -> Any:
        """H + damping·I (``kind="hessian"``) or G + damping·I (``kind="gnh"``) as a symmetric
        ``scipy.sparse.linalg.LinearOperator`` whose ``matmat`` is one block product (``pyhessk.linalg``)."""
        from .linalg import as_linear_operator

        return as_linear_operator(self, kind, damping)

    # ---- exact damped solves ----------------------------------------------------------------------
    def gnh_solve(self, B: Any, damping: float, chunk_size: int | None = None, max_size: int | None = None) -> np.ndarray:
        r"""Exact (G + damping·I)⁻¹ B from the stored GNH factors, in the smaller of two spaces.

        G = sŜᵀŜ + λP_W has rank at most n·d + (the weights' λ). Where n·d < N the solve goes through the
        sample space (Woodbury; ALGORITHMS §4.5): with D = damping·I + λP_W,
        :math:`(D + sŜᵀŜ)^{-1} = D^{-1} - sD^{-1}Ŝᵀ(I + sŜD^{-1}Ŝᵀ)^{-1}ŜD^{-1}`, one (n·d × n·d) Gram built from
        the factors and one Cholesky factorisation; where λ dwarfs the damping, the weights alone go through
        the Gram and the Σn_l biases through their Schur complement, so that the solve stays as accurate as
        G + damping·I is well conditioned. Where N ≤ n·d, G + damping·I itself (N × N) is assembled from the
        factors and factorised. J is never formed, nor G in the sample space. ``gnh_entries()`` runs first if
        needed. Costs O(n²d²Σn_l + (nd)³/3) once per damping in the sample space (O(n·d·N² + N³/3) in the
        parameter space; the factorisation is kept for the last damping used), then O(n·N + (nd)²) per
        column. Computed in float64, returned in the network's dtype and in B's array library; on the cuda
        engine with a snapshot of GPU arrays all of it runs on the device.

        Args:
            B: right-hand sides, (N,) or (N, k), finite.
            damping: δ ≥ 0. δ = 0 needs G + λP_W invertible: weight decay λ > 0, with no more biases than
                n·d, or N ≤ n·d; a singular one raises ValueError.
            chunk_size: samples per block of rows while the matrix is built; default about 2²⁵ numbers
                (256 MiB) per block. On the host the matrix is built and factorised in place, so the peak
                memory is its min(N, n·d)² numbers plus one block of chunk_size·d·min(N, n·d) numbers and
                one layer's factors in float64 (with the biases apart, n·d·Σn_l + (Σn_l)² numbers instead
                where more); a device snapshot needs about two more matrices (``cupy.linalg.cholesky``
                returns a new array).
            max_size: the largest order min(N, n·d) of the factorised matrix (default 16384: 2 GiB for
                the matrix alone, before the working memory above); larger raises ValueError stating the
                peak memory it would need.

        Conditioning: lower bounds on cond(G + δI) (for a singular G it is 1 + ‖G‖/δ) are checked while the
        system is factorised. Past 1e8 a ``scipy.linalg.LinAlgWarning`` says so; where the damped matrix is
        numerically singular in float64 (a bound past 1/ε, a failed factorisation or overflow), ValueError
        names the damping and the smallest one advised. A solution that overflows the network's dtype
        raises FloatingPointError.
        """
        from . import _gram

        v, single = self._block(B, "B")
        damping = as_real(damping, "damping", low=0.0)
        model = self._model
        n, d = self._lin.n, model.sizes[-1]
        _gram.route(model, n, damping)  # ValueError where G + δI is singular whatever the data
        size = _gram.system_size(model, n)
        chunk = _gram.default_chunk(n, d) if chunk_size is None else as_int(chunk_size, "chunk_size", low=1)
        max_size = _gram.DEFAULT_MAX_SIZE if max_size is None else as_int(max_size, "max_size", low=1)
        if size > max_size:
            raise ValueError(
                f"the system to factorise would be {size} × {size} (min(N, n·d) = min({model.num_params}, {n}·{d}); "
                f"a peak of {_gram.human_bytes(_gram.gram_bytes(model, n, damping, chunk))} in float64 to build "
                f"and factorise it), more than max_size={max_size}: use a smaller batch, raise max_size knowingly, "
                "or solve iteratively (pyhessk.linalg.cg with linear_operator('gnh', damping))"
            )
        xp = namespace_of(v)
        if v.shape[1] == 0:
            return self._unblock(xp.empty_like(v), single)
        home = self._home()  # where the factors live: the matrix, its factorisation and the solve stay there
        if self._solver is None or self._solver[0] != damping:
            layers = _gram.as_layers(self._engine, self.gnh_entries()._fac, model, home)
            self._solver = (damping, _gram.factorise(model, layers, model.scale(n), damping, chunk))
        rhs = to_host(v) if home is np else home.asarray(v)
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            out = self._solver[1].solve(rhs.astype(np.float64, copy=False)).astype(self._dtype, copy=False)
        if not bool(home.isfinite(out).all()):
            raise FloatingPointError(
                f"the solution (G + damping·I)⁻¹ B overflows {np.dtype(self._dtype).name} at damping={damping!r}: "
                "scale B down or raise the damping")
        return self._unblock(to_host(out) if xp is np else xp.asarray(out), single)

    # ---- entrywise Gauss–Newton ----------------------------------------------------------------------
    def gnh_entries(self) -> GnhEntries:
        """Run (once) the precomputation of SPEC §3 and return exact and sampled access to G's entries."""
        if self._entries is None:
            self._entries = GnhEntries(self, self._engine.gnh_precompute(self._lin))
        return self._entries


class GnhEntries:
    r"""Entries of the Gauss–Newton Hessian without forming J (Chen, Reiz, Yu, Bungartz, Biros 2021).

    With S_{l,k} = C_kᵀ ∂f_k/∂z_l stored for every sample,
    :math:`G_{pq} = \frac1n \sum_k a_{l-1,k}[j]\, a_{l'-1,k}[j']\, ⟨S_{l,k}[:,i], S_{l',k}[:,i']⟩` (+ λ on the
    weight diagonal): O(n·d) per exact entry, independent of N. Memory: n·d·Σ n_l numbers.
    """

    def __init__(self, curvature: Curvature, factors: Any) -> None:
        self._c = curvature
        self._engine = curvature._engine
        self._fac = factors
        self._N = curvature.num_params

    def _pair(self, rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        r, c = as_index(rows, "rows", self._N), as_index(cols, "cols", self._N)
        shape, shape_c = np.shape(rows), np.shape(cols)
        if shape != shape_c:
            raise ValueError(f"rows and cols must have equal lengths, got shapes {shape} and {shape_c}")
        return r, c, shape

    def entries(self, rows: Any, cols: Any) -> np.ndarray:
        """Exact G[rows[t], cols[t]] for index arrays of equal length."""
        r, c, shape = self._pair(rows, cols)
        if r.size == 0:
            return self._c._home().empty(shape, dtype=self._c.dtype)
        return self._engine.gnh_entries(self._fac, r, c).reshape(shape)

    def block(self, I: Any, J: Any) -> np.ndarray:
        """Exact G[np.ix_(I, J)], one GEMM over the gathered factors."""
        i, j = as_index(I, "I", self._N), as_index(J, "J", self._N)
        if i.size == 0 or j.size == 0:
            return self._c._home().empty((i.size, j.size), dtype=self._c.dtype)
        return self._engine.gnh_block(self._fac, i, j)

    def column(self, j: Any) -> np.ndarray:
        """Exact column G[:, j] (N,) for an int j, or columns G[:, J] (N, m) for an index array."""
        single = np.ndim(j) == 0
        J = as_index(np.atleast_1d(j), "j", self._N)
        if J.size == 0:
            return self._c._home().empty((self._N, 0), dtype=self._c.dtype)
        out = self._engine.gnh_columns(self._fac, J)
        return out[:, 0] if single else out

    def diagonal(self) -> np.ndarray:
        """Exact diag(G) (N,), from the column norms only: O(n) per entry."""
        return self._engine.gnh_diagonal(self._fac)

    def gnvp(self, V: Any) -> np.ndarray:
        """G V from the stored factors alone (the factored product): V (N,) or (N, k) → same shape.

        No R-forward and no backward pass: per layer one GEMM A_{l−1}V_lᵀ, a contraction with S_l down to
        (n, k, d), the transposed contraction back, and one GEMM for the weight block (2 layer-GEMMs per
        layer instead of the plain product's 4), plus one pass over the factors (n·d·Σn_l numbers). A hidden
        layer l before a narrow one instead takes the R-forward step through W_{l+1} (one GEMM each way
        rather than two passes over S_l), as ``factored_gnvp_plan`` decides.
        Equals ``Curvature.gnvp`` up to rounding; that method picks this route by itself when faster.
        """
        v, single = self._c._block(V)
        if v.shape[1] == 0:
            return namespace_of(v).empty_like(v)
        return self._c._unblock(self._engine.gnh_gnvp(self._fac, v, self._plan(v.shape[1])[0]), single)

    def _plan(self, k: int) -> tuple[tuple[bool, ...], float, float]:
        """The factored product's route for k vectors and its predicted cost against the plain product's."""
        return factored_gnvp_plan(self._c.net.sizes, self._c.num_samples, k, self._c.dtype.itemsize,
                                  self._engine.factor_byte_flops, self._engine.factor_pass_cost)

    @staticmethod
    def num_samples(eps: float, delta: float, method: str = "mean") -> int:
        """The total sample count of ``estimate`` (saturating at 2⁶³ − 1 for tiny ε or δ).

        "mean": s = ⌈1/(δ ε²)⌉ draws (Chebyshev). "median_of_means": g = ⌈8 ln(1/δ)⌉ groups of
        ⌈4/ε²⌉ draws each (each group mean fails with probability ≤ 1/4; the median fails only if half
        of them do, which Hoeffding bounds by e^{−g/8} ≤ δ), so g·⌈4/ε²⌉ draws in all: fewer than the
        mean's once δ < about 0.005.
        """
        groups, per_group = GnhEntries._sampling_plan(*GnhEntries._check_plan(eps, delta, method))
        return _MAX_SAMPLES if per_group > _MAX_SAMPLES // groups else groups * per_group

    @staticmethod
    def _sampling_plan(eps: float, delta: float, method: str) -> tuple[int, int]:
        """(number of groups, draws per group) of ``estimate``."""
        def draws(q: float) -> int:  # ⌈1/q⌉ within [1, _MAX_SAMPLES] (q overflows to inf for a huge ε)
            return _MAX_SAMPLES if q * _MAX_SAMPLES <= 1.0 else max(1, math.ceil(1.0 / q))

        if method == "mean":
            return 1, draws(delta * eps * eps)
        return max(1, math.ceil(8.0 * math.log(1.0 / delta))), draws(eps * eps / 4.0)

    def will_sample(self, eps: float = 0.05, delta: float = 0.01, method: str = "mean") -> bool:
        """Whether ``estimate`` with these arguments samples (True) or returns the exact entries (False):
        exact when s ≥ n, or when the exact entry (a dot product of length n·d) is predicted cheaper than
        building the sampling distribution and making the draws (see ``estimate``)."""
        eps, delta, method = self._check_plan(eps, delta, method)
        return self._samples(*self._sampling_plan(eps, delta, method), allow_exact=True)

    def _samples(self, groups: int, s: int, allow_exact: bool) -> bool:
        n, d = self._c.num_samples, self._c.net.sizes[-1]
        if s >= n:
            return False
        draws = min(groups * s, _MAX_SAMPLES)
        return not allow_exact or _EXACT_COST * n * d > n + _DRAW_COST * draws * d

    @staticmethod
    def _check_plan(eps: Any, delta: Any, method: Any) -> tuple[float, float, str]:
        eps = as_real(eps, "eps", low=0.0, open_low=True)
        delta = as_real(delta, "delta", low=0.0, high=1.0, open_low=True, open_high=True)
        if not isinstance(method, str) or method not in _SAMPLING_METHODS:
            raise ValueError(f"method must be one of {_SAMPLING_METHODS}, got {method!r}")
        return eps, delta, method

    def estimate(self, rows: Any, cols: Any, eps: float = 0.05, delta: float = 0.01, seed: int | None = None,
                 method: str = "mean", allow_exact: bool = True) -> np.ndarray:
        r"""Sampled estimates of G[rows[t], cols[t]] (SPEC §3).

        Draws sample indices with probability π_k ∝ ‖x_k‖‖y_k‖ and returns the unbiased
        importance-sampling mean of s draws, whose variance is at most G_pp G_qq / s, so that
        :math:`|\hat G_{pq} - G_{pq}| ≤ ε\sqrt{G_{pp}G_{qq}}` with probability ≥ 1 − δ:

        - ``method="mean"``: one mean of s = ⌈1/(δ ε²)⌉ draws (Chebyshev); cost O(n + s·d) per entry.
        - ``method="median_of_means"``: the median of g = ⌈8 ln(1/δ)⌉ means of ⌈4/ε²⌉ draws each (all
          from one sampling distribution); cost O(n + d·log(1/δ)/ε²) per entry, cheaper than the mean
          once δ is below about 0.005.

        The exact value, which meets any (ε, δ), is returned instead when s ≥ n, and, unless
        ``allow_exact=False``, whenever it is predicted cheaper: an exact entry streams n·d contiguous
        numbers, while each draw gathers d numbers from random places, so sampling pays only once n is above
        about 15 times the draws (every one-output network, and e.g. n ≲ 1,700 with d = 10 and s = 112, get
        exact values). ``will_sample`` says which happens; ``allow_exact=False`` always samples when s < n (to
        study the estimator itself). The same seed gives the same result; ``num_samples`` gives the draw
        count. On the C++ and Numba engines the first call that samples keeps a copy of the factors S with
        each sample's d values adjacent (as much memory again as S, when d > 1), so that a draw reads one
        or two cache lines instead of d.
        """
        eps, delta, method = self._check_plan(eps, delta, method)
        if seed is not None:
            seed = as_int(seed, "seed", low=0)
        if not isinstance(allow_exact, (bool, np.bool_)):
            raise TypeError(f"allow_exact must be a bool, got {type(allow_exact).__name__}")
        r, c, shape = self._pair(rows, cols)
        if r.size == 0:
            return self._c._home().empty(shape, dtype=self._c.dtype)
        groups, s = self._sampling_plan(eps, delta, method)
        if not self._samples(groups, s, bool(allow_exact)):
            return self._engine.gnh_entries(self._fac, r, c).reshape(shape)
        if groups == 1:
            return self._engine.gnh_sample(self._fac, r, c, s, seed).reshape(shape)
        means = self._engine.gnh_sample_groups(self._fac, r, c, s, groups, seed)  # (groups, m)
        return namespace_of(means).median(means, axis=0).astype(self._c.dtype, copy=False).reshape(shape)


def factored_gnvp_plan(sizes: Sequence[int], n: int, k: int, itemsize: int, flops_per_byte: float | None = None,
                       pass_cost: float = 1.0) -> tuple[tuple[bool, ...], float, float]:
    """The factored product's route for k vectors (see ``_route``), remembered per architecture and k: a product
    on a small net takes a few microseconds, as long as pricing it. ``flops_per_byte``: the GEMM flops one
    byte of streamed factors costs; None: ``blas_flops_per_byte()``, that of the BLAS this process runs.
    ``pass_cost``: the engine's passes over the factors relative to the C++ kernels' (``factor_pass_cost``)."""
    per_byte = blas_flops_per_byte() if flops_per_byte is None else float(flops_per_byte)
    return _route(tuple(int(w) for w in sizes), int(n), int(k), int(itemsize), per_byte, float(pass_cost))


@functools.cache
def blas_flops_per_byte() -> float:
    """The route model's price of a streamed byte for NumPy's BLAS in this process: _FLOPS_PER_BYTE_AVX512
    when it is an OpenBLAS running AVX-512 kernels, else _FLOPS_PER_BYTE (read once: the kernels are chosen
    when the library loads)."""
    from ._blasinfo import blas_report, runs_avx512_kernels

    try:
        avx512 = runs_avx512_kernels(blas_report())
    except Exception:  # noqa: BLE001 - an unreadable BLAS keeps the AVX2 price
        avx512 = False
    return _FLOPS_PER_BYTE_AVX512 if avx512 else _FLOPS_PER_BYTE


@functools.lru_cache(maxsize=256)
def _route(sizes: tuple[int, ...], n: int, k: int, itemsize: int, flops_per_byte: float,
           pass_cost: float) -> tuple[tuple[bool, ...], float, float]:
    """The factored product's route for k vectors: (carry, predicted cost, predicted cost of the plain product).

    Costs in GEMM flops. Plain: 2nk(2n_1n_0 + 4Σ_{l≥2}n_ln_{l−1}). Factored: 2nk·2Σn_ln_{l−1} for the GEMMs
    with V and A, and per layer l either its two contractions with S_l (streaming 2·n·d·n_l numbers, free
    while all factors fit in cache, plus 4nkd·n_l flops weighted by √k) or, for a hidden layer, carrying
    its R-values on through W_{l+1} (one GEMM each way, 4nk·n_l·max(n_{l+1}, 8) flops, plus two sweeps of nk·n_l
    and two reads of φ′_l):
    ``carry[l−1]`` says which, the cheaper of the two (the output layer is always contracted). Carrying
    pays when layer l + 1 is narrow compared with d; with every hidden layer carried the route is the plain
    product's arithmetic on the factored product's layout. Every term but the GEMMs is the engine's own
    kernels' work, priced for the C++ ones and multiplied by ``pass_cost``.
    """
    d = sizes[-1]
    L = len(sizes) - 1
    prods = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    plain = 2 * n * k * (2 * prods[0] + 4 * sum(prods[1:]))
    factor_bytes = n * d * sum(sizes[1:]) * itemsize
    per_byte = flops_per_byte if factor_bytes > _CACHED_BYTES else 0.0

    def contract(n_l: int) -> float:
        return pass_cost * (per_byte * 2 * n * d * n_l * itemsize
                            + _CONTRACTION_FLOP * 4 * n * k * d * n_l * math.sqrt(k))

    def carried(n_l: int, n_next: int) -> float:
        # a GEMM narrower than a micro-kernel runs no faster than one _MIN_GEMM_WIDTH wide; φ′_l is read once
        # per pass, as S_l would be
        gemm = 4 * n * k * n_l * max(n_next, _MIN_GEMM_WIDTH)
        return gemm + pass_cost * (per_byte * 2 * n * n_l * itemsize + _CONTRACTION_FLOP * 2 * n * k * n_l)

    carry = tuple(l < L and carried(sizes[l], sizes[l + 1]) < contract(sizes[l]) for l in range(1, L + 1))
    factored = 2 * n * k * 2 * sum(prods) + contract(sizes[L]) + sum(
        carried(sizes[l], sizes[l + 1]) if carry[l - 1] else contract(sizes[l]) for l in range(1, L))
    return carry, factored, plain
