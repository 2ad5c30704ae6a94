"""Entrywise Gauss–Newton at scale (issue 6): the factored product, exact damped solves through the
sample-space Gram, and the median-of-means sampler, against the explicit Jᵀ H_out J of ``oracles``."""

from __future__ import annotations

import gc
import itertools
import re
import warnings
from functools import cache

import numpy as np
import pytest

from pyhessk import _gram

from cases import CASE_IDS, CASES, Case
from oracles import explicit_gnh, rel_err

from pyhessk._arrays import to_host

TOL = {np.dtype("float64"): 1e-7, np.dtype("float32"): 5e-4}  # the explicit G comes from finite differences


@cache
def oracle_g(case: Case) -> np.ndarray:
    return explicit_gnh(case, *case.data("float64"))


def curvature_for(case: Case, backend: str, dtype=np.float64):
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
    th, X, Y = (cast(a) for a in case.data("float64"))
    return case.net(backend).linearize(th, X, Y)


# ---- the factored Gauss–Newton product ---------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_factored_gnvp_matches_the_explicit_gnh(case, backend, dtype):
    c = curvature_for(case, backend, dtype)
    e = c.gnh_entries()
    G = oracle_g(case)
    rng = np.random.default_rng(5)
    N = c.num_params
    v = rng.standard_normal(N).astype(dtype)
    V = rng.standard_normal((N, 3)).astype(dtype)
    gv, GV = e.gnvp(v), e.gnvp(V)
    assert gv.shape == (N,) and GV.shape == (N, 3) and gv.dtype == GV.dtype == dtype
    assert rel_err(gv, G @ v) < TOL[c.dtype]
    assert rel_err(GV, G @ V) < TOL[c.dtype]
    assert e.gnvp(np.zeros((N, 0), dtype)).shape == (N, 0)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_factored_gnvp_equals_the_plain_product_in_float64(case, backend):
    """Issue 6: the two routes agree to 1e-12 in float64 (they differ only in the order of the sums)."""
    c = curvature_for(case, backend)
    V = np.random.default_rng(6).standard_normal((c.num_params, 4))
    plain = c.gnvp(V)  # before gnh_entries(): always the plain product
    assert rel_err(c.gnh_entries().gnvp(V), plain) < 1e-12
    assert rel_err(c.gnvp(V), plain) < 1e-12  # either route, once the factors exist


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_carried_route_equals_the_plain_product(case, backend, dtype):
    """Each subset of hidden layers taking the R-forward step through W_{l+1} instead of meeting S_l (the
    route ``factored_gnvp_plan`` may pick) gives the plain product's G V: 1e-12 in float64, float32 rounding
    in float32; one vector and a block."""
    c = curvature_for(case, backend, dtype)
    e = c.gnh_entries()
    L = len(case.sizes) - 1
    rng = np.random.default_rng(8)
    tol = 1e-12 if dtype == np.float64 else 5e-5
    for k in (1, 3):
        V = rng.standard_normal((c.num_params, k)).astype(dtype)
        plain = c._engine.gnvp(c._lin, V)
        for mask in itertools.product((False, True), repeat=L - 1):
            carry = mask + (False,)
            got = c._engine.gnh_gnvp(e._fac, V, carry)
            assert got.dtype == dtype and got.shape == V.shape
            assert rel_err(to_host(got), to_host(plain)) < tol, (k, carry)


@pytest.mark.parametrize("n", [31, 47, 544, 1057])
def test_sums_over_samples_across_their_blocks(backend, dtype, n):
    """Compiled engines sum over samples in blocks (C++: 16 rows at a time for the bias sums of the plain
    products and the gradient; 512 numbers in groups of 32 for the factored product's, then a remainder;
    CUDA: tiles of 32 columns by chunks of 256 rows, and one block per row for the GNH columns; the C++
    exact entries: the same blocks of 512 in groups of 32). At batch sizes and widths that end each block
    part-way, every route gives the NumPy reference's numbers."""
    case = Case((3, 40, 4, 2), "tanh", "mse", n=n, seed=41)
    ref, c = curvature_for(case, "numpy", dtype), curvature_for(case, backend, dtype)
    e = c.gnh_entries()
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert rel_err(to_host(c.grad), to_host(ref.grad)) < tol
    rng = np.random.default_rng(n)
    for k in (1, 3):
        V = rng.standard_normal((c.num_params, k)).astype(dtype)
        want_g, want_h = to_host(ref._engine.gnvp(ref._lin, V)), to_host(ref.hvp(V))
        assert rel_err(to_host(c._engine.gnvp(c._lin, V)), want_g) < tol, k
        assert rel_err(to_host(c.hvp(V)), want_h) < tol, k
        for carry in ((False, False, False), (True, True, False)):
            assert rel_err(to_host(c._engine.gnh_gnvp(e._fac, V, carry)), want_g) < tol, (k, carry)
    e_ref, cols = ref.gnh_entries(), [0, 120, 200, 320, 333]  # weights and biases of every layer
    assert rel_err(to_host(e.diagonal()), to_host(e_ref.diagonal())) < tol
    assert rel_err(to_host(e.column(cols)), to_host(e_ref.column(cols))) < tol
    rows, cols = np.repeat(cols, 5), np.tile(cols, 5)  # weight·weight, weight·bias and bias·bias entries
    assert rel_err(to_host(e.entries(rows, cols)), to_host(e_ref.entries(rows, cols))) < tol


def test_carried_route_outlives_every_python_reference_to_the_linearization(backend):
    """The carried route reads W_{l+1} and φ′_l from the linearization (the C++ factors keep a pointer, not
    a copy): with the factors the last Python reference, a carried product still gives the plain one."""
    case = CASES[2]
    c = curvature_for(case, backend, np.float64)
    engine, lin = c._engine, c._lin
    fac = engine.gnh_precompute(lin)
    V = np.random.default_rng(9).standard_normal((c.num_params, 2))
    plain = to_host(engine.gnvp(lin, V))
    carry = (True,) * (len(case.sizes) - 2) + (False,)
    del c, lin
    gc.collect()
    th, X, Y = case.data("float64")
    for t in range(3):  # other linearizations, which would reuse a freed one's memory
        case.net(backend).linearize(th * (t + 2), X, Y).gnvp(V)
    assert rel_err(to_host(engine.gnh_gnvp(fac, V, carry)), plain) < 1e-12


def test_factored_gnvp_leaves_its_input_alone(backend):
    c = curvature_for(CASES[2], backend)
    V = np.random.default_rng(7).standard_normal((c.num_params, 2))
    keep = V.copy()
    c.gnh_entries().gnvp(V)
    assert np.array_equal(V, keep)


# (config, n, k, itemsize, faster route measured on the C++ engine: bench/results/cpp-epyc2c-2026-11-22.md,
# factored (with the planned carried layers) vs plain ms)
MEASURED_ROUTES = [
    ((10, 32, 32, 1), 256, 1, 4, "factored"),  # S: 0.033 vs 0.045
    ((10, 32, 32, 1), 256, 16, 4, "factored"),  # S, k = 16: 0.331 vs 0.448
    ((10, 32, 32, 1), 256, 1, 8, "factored"),  # S-f64: 0.053 vs 0.084
    ((10, 32, 32, 1), 256, 16, 8, "factored"),  # S-f64, k = 16: 0.560 vs 0.797
    ((2, 50, 50, 50, 1), 4096, 1, 4, "factored"),  # P: 1.28 vs 1.55
    ((2, 50, 50, 50, 1), 4096, 16, 4, "factored"),  # P, k = 16: 17.4 vs 20.0
    ((784, 256, 256, 10), 1024, 1, 4, "factored"),  # M: 6.21 vs 6.89 (layer 2 carried)
    ((784, 256, 256, 10), 1024, 16, 4, "factored"),  # M, k = 16: 101 vs 125
    ((1024, 1024, 1024, 1024, 10), 512, 1, 4, "factored"),  # W: 32.7 vs 50.8 (layer 3 carried)
    ((1024, 1024, 1024, 1024, 10), 512, 4, 4, "factored"),  # W, k = 4: 158 vs 223
    ((64,) + (64,) * 10 + (10,), 512, 1, 4, "plain"),  # D: 1.16 (every hidden layer carried) vs 1.04
    # Not pinned: D, k = 16, measured 16.7 (every hidden layer carried) vs 19.5 plain. With every layer
    # carried the two routes do the same GEMM flops, so the model calls it a tie and keeps the plain
    # product; the plain block product's layout costs more than its flops say.
]

# (config, n, k, itemsize, the hidden layers measured faster carried than contracted, same tables)
MEASURED_CARRIES = [
    ((784, 256, 256, 10), 1024, 1, 4, (2,)),  # M: carrying layer 2 6.83 ms, none 7.18, layers 1–2 7.52
    ((1024, 1024, 1024, 1024, 10), 512, 1, 4, (3,)),  # W: layer 3 33.5 ms, none 34.4, layers 2–3 42.8
    ((2, 50, 50, 50, 1), 4096, 1, 4, ()),  # P: none 1.46 ms, layer 3 (into the 1-unit output) 1.55, same rounds
    ((10, 32, 32, 1), 256, 16, 4, ()),  # S, k = 16: none 0.342 ms, layer 2 0.356, same rounds
    ((64,) + (64,) * 10 + (10,), 512, 16, 4, tuple(range(1, 11))),  # D, k = 16: all 16.7 ms, none 21.4
]


# The same machine with OpenBLAS's AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX), priced at
# _FLOPS_PER_BYTE_AVX512: bench/results/factored-routes-cpp-epyc2c-skx-2026-11-22.md, factored vs plain ms in
# the same rounds. Its GEMMs ran 1.56× faster and its passes over the factors did not, which turns M, k = 1.
MEASURED_ROUTES_AVX512 = [
    ((10, 32, 32, 1), 256, 1, 4, "factored"),  # S: 0.030 vs 0.040
    ((10, 32, 32, 1), 256, 16, 8, "factored"),  # S-f64, k = 16: 0.614 vs 1.15
    ((2, 50, 50, 50, 1), 4096, 1, 4, "factored"),  # P: 1.36 vs 1.90
    ((2, 50, 50, 50, 1), 4096, 16, 4, "factored"),  # P, k = 16: 15.4 vs 22.6
    ((784, 256, 256, 10), 1024, 1, 4, "plain"),  # M: 5.22 vs 4.66 (0.805 of the GEMM flops)
    ((784, 256, 256, 10), 1024, 16, 4, "factored"),  # M, k = 16: 66.0 vs 77.7
    ((1024, 1024, 1024, 1024, 10), 512, 1, 4, "factored"),  # W: 22.3 vs 33.8
    ((1024, 1024, 1024, 1024, 10), 512, 4, 4, "factored"),  # W, k = 4: 101 vs 144
    ((64,) + (64,) * 10 + (10,), 512, 1, 4, "plain"),  # D: 1.56 vs 1.33
]


@pytest.mark.parametrize("sizes,n,k,itemsize,faster", MEASURED_ROUTES)
def test_the_route_model_picks_the_measured_faster_route(sizes, n, k, itemsize, faster):
    from pyhessk.curvature import _FLOPS_PER_BYTE, factored_gnvp_plan

    _, factored, plain = factored_gnvp_plan(sizes, n, k, itemsize, _FLOPS_PER_BYTE)
    assert (factored < plain) == (faster == "factored")


@pytest.mark.parametrize("sizes,n,k,itemsize,faster", MEASURED_ROUTES_AVX512)
def test_the_route_model_picks_the_measured_faster_route_with_avx512_kernels(sizes, n, k, itemsize, faster):
    from pyhessk.curvature import _FLOPS_PER_BYTE_AVX512, factored_gnvp_plan

    _, factored, plain = factored_gnvp_plan(sizes, n, k, itemsize, _FLOPS_PER_BYTE_AVX512)
    assert (factored < plain) == (faster == "factored")


@pytest.mark.parametrize("sizes,n,k,itemsize,carried", MEASURED_CARRIES)
def test_the_route_model_carries_the_measured_layers(sizes, n, k, itemsize, carried):
    from pyhessk.curvature import _FLOPS_PER_BYTE, factored_gnvp_plan

    carry, _, _ = factored_gnvp_plan(sizes, n, k, itemsize, _FLOPS_PER_BYTE)
    assert len(carry) == len(sizes) - 1 and not carry[-1]
    assert tuple(l for l in range(1, len(sizes)) if carry[l - 1]) == carried


# The Numba and NumPy engines, same machine and AVX2 kernels, priced with their ``factor_pass_cost``:
# bench/results/factored-routes-{numba,numpy}-epyc2c-2026-11-22.md, factored vs plain ms in the same rounds.
# Not pinned: Numba on M with one vector, a tie (factored ÷ plain 0.96–1.09 over five runs).
MEASURED_ROUTES_BY_ENGINE = [
    ("numba", (10, 32, 32, 1), 256, 1, 4, "factored"),  # S: 0.041 vs 0.053
    ("numba", (2, 50, 50, 50, 1), 4096, 1, 4, "factored"),  # P: 1.12 vs 1.56
    ("numba", (784, 256, 256, 10), 1024, 16, 4, "factored"),  # M, k = 16: 103 vs 115
    ("numba", (1024, 1024, 1024, 1024, 10), 512, 1, 4, "factored"),  # W: 35.3 vs 51.2
    ("numba", (64,) + (64,) * 10 + (10,), 512, 1, 4, "plain"),  # D: 1.33 vs 1.30
    ("numpy", (10, 32, 32, 1), 256, 1, 4, "factored"),  # S: 0.077 vs 0.085
    ("numpy", (2, 50, 50, 50, 1), 4096, 1, 4, "plain"),  # P: 2.25 vs 2.19
    ("numpy", (784, 256, 256, 10), 1024, 1, 4, "plain"),  # M: 7.26 (layers 1–2 carried), 13.0 (none) vs 7.18
    ("numpy", (784, 256, 256, 10), 1024, 16, 4, "factored"),  # M, k = 16: 105 vs 121
    ("numpy", (1024, 1024, 1024, 1024, 10), 512, 1, 4, "factored"),  # W: 45.1 vs 50.2
    ("numpy", (64,) + (64,) * 10 + (10,), 512, 16, 4, "plain"),  # D, k = 16: 25.1 vs 23.3
]


def _engine_class(name):
    if name == "numba":
        pytest.importorskip("numba")
        from pyhessk.backends.numba.mlp import NumbaBackend

        return NumbaBackend
    from pyhessk.backends.numpy.mlp import NumpyBackend

    return NumpyBackend


@pytest.mark.parametrize("engine,sizes,n,k,itemsize,faster", MEASURED_ROUTES_BY_ENGINE)
def test_the_route_model_picks_the_measured_faster_route_for_each_engine(engine, sizes, n, k, itemsize, faster):
    from pyhessk.curvature import _FLOPS_PER_BYTE, factored_gnvp_plan

    cost = _engine_class(engine).factor_pass_cost
    _, factored, plain = factored_gnvp_plan(sizes, n, k, itemsize, _FLOPS_PER_BYTE, cost)
    assert (factored < plain) == (faster == "factored")


def test_the_pass_cost_scales_every_term_but_the_gemms():
    """pass_cost 0 leaves the GEMM flops alone (2nk·2Σn_l n_{l−1}, nothing carried); on a fixed route the rest of
    the factored price grows linearly with it; the plain price never moves."""
    from pyhessk.curvature import _FLOPS_PER_BYTE, factored_gnvp_plan

    # a net with no hidden layer (nothing to carry) and D (every hidden layer carried at either price)
    for sizes, n, k in (((784, 10), 1024, 1), ((64,) + (64,) * 10 + (10,), 512, 1)):
        gemm = 2 * n * k * 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        carry0, f0, p0 = factored_gnvp_plan(sizes, n, k, 4, _FLOPS_PER_BYTE, 0.0)
        assert not any(carry0) and f0 == gemm
        carry1, f1, p1 = factored_gnvp_plan(sizes, n, k, 4, _FLOPS_PER_BYTE, 1.0)
        carry2, f2, p2 = factored_gnvp_plan(sizes, n, k, 4, _FLOPS_PER_BYTE, 2.0)
        assert p0 == p1 == p2 and carry1 == carry2
        carried = sum(4 * n * k * sizes[l] * max(sizes[l + 1], 8) for l in range(1, len(sizes) - 1) if carry1[l - 1])
        assert f2 - gemm - carried == pytest.approx(2 * (f1 - gemm - carried), rel=1e-12)


def test_factored_gnvp_prices_the_route_for_its_engine(backend):
    """``e.gnvp`` and ``c.gnvp`` plan with the engine's own prices (byte and passes)."""
    from pyhessk.curvature import factored_gnvp_plan

    c = curvature_for(CASES[2], backend)
    e = c.gnh_entries()
    engine = c._engine
    assert engine.factor_pass_cost > 0
    for k in (1, 5):
        assert e._plan(k) == factored_gnvp_plan(c.net.sizes, c.num_samples, k, c.dtype.itemsize,
                                                engine.factor_byte_flops, engine.factor_pass_cost)


@pytest.mark.parametrize("library,core,avx512", [
    ("openblas", "SkylakeX", True), ("OpenBLAS", "sapphirerapids", True), ("openblas", "Cooperlake ", True),
    ("openblas", "Haswell", False), ("openblas", "Zen", False), ("mkl", "SkylakeX", False),
    ("openblas", "unknown", False), ("unknown", "unknown", False),
])
def test_the_byte_price_follows_the_blas_kernels(monkeypatch, library, core, avx512):
    """A process whose OpenBLAS runs AVX-512 kernels prices a streamed byte at _FLOPS_PER_BYTE_AVX512, any
    other BLAS at _FLOPS_PER_BYTE; the default plan uses that price, an explicit one overrides it."""
    import pyhessk._blasinfo as blasinfo
    from pyhessk import curvature as cv

    monkeypatch.setattr(blasinfo, "blas_report", lambda: {"library": library, "core": core})
    cv.blas_flops_per_byte.cache_clear()
    try:
        price = cv.blas_flops_per_byte()
        assert price == (cv._FLOPS_PER_BYTE_AVX512 if avx512 else cv._FLOPS_PER_BYTE)
        M = ((784, 256, 256, 10), 1024, 1, 4)
        assert cv.factored_gnvp_plan(*M) == cv.factored_gnvp_plan(*M, price)
        faster = cv.factored_gnvp_plan(*M)[1] < cv.factored_gnvp_plan(*M)[2]
        assert faster == (not avx512)  # the measured turn of M, k = 1 (MEASURED_ROUTES*)
    finally:
        cv.blas_flops_per_byte.cache_clear()


def test_an_unreadable_blas_keeps_the_avx2_price(monkeypatch):
    import pyhessk._blasinfo as blasinfo
    from pyhessk import curvature as cv

    def broken():
        raise OSError("no BLAS")

    monkeypatch.setattr(blasinfo, "blas_report", broken)
    cv.blas_flops_per_byte.cache_clear()
    try:
        assert cv.blas_flops_per_byte() == cv._FLOPS_PER_BYTE
    finally:
        cv.blas_flops_per_byte.cache_clear()


def test_factored_gnvp_rejects_bad_vectors(backend):
    c = curvature_for(CASES[0], backend)
    e = c.gnh_entries()
    with pytest.raises(ValueError, match="num_params"):
        e.gnvp(np.ones(c.num_params + 1))
    with pytest.raises(TypeError):
        e.gnvp(np.ones(c.num_params, dtype=np.float32))


# ---- exact damped solves (Woodbury through the sample-space Gram) --------------------------------------

SOLVE_CASES = [
    Case((3, 4, 3), "tanh", "mse", n=6, seed=40),
    Case((4, 5, 3), "sigmoid", "softmax_cross_entropy", n=5, seed=41, l2=0.2),
    Case((3, 4, 2), "softplus", "sigmoid_cross_entropy", n=7, seed=42, reduction="sum"),
    Case((3, 5, 4, 3), ("tanh", "gelu"), "softmax_cross_entropy", n=4, seed=43, bias=False, l2=0.1),
    Case((2, 6, 1), "relu", "mse", n=9, seed=44),
]


@pytest.mark.parametrize("case", SOLVE_CASES, ids=[c.id for c in SOLVE_CASES])
@pytest.mark.parametrize("damping", [1e-3, 0.7])
def test_gnh_solve_matches_a_dense_solve(case, backend, damping):
    """Against a dense solve of G + δI, G assembled from plain Gauss–Newton products (R-forward and
    backward: no factor, no Gram) to 1e-10, and from the finite-difference Jacobians to their accuracy."""
    c = curvature_for(case, backend)
    N = c.num_params
    K = c.gnh() + damping * np.eye(N)
    rng = np.random.default_rng(8)
    b, B = rng.standard_normal(N), rng.standard_normal((N, 3))
    keep = B.copy()
    x, X = c.gnh_solve(b, damping), c.gnh_solve(B, damping)
    assert x.shape == (N,) and X.shape == (N, 3)
    assert rel_err(x, np.linalg.solve(K, b)) < 1e-10
    assert rel_err(X, np.linalg.solve(K, B)) < 1e-10
    assert rel_err(K @ X, B) < 1e-10  # the residual, not only the forward error
    assert rel_err(X, np.linalg.solve(oracle_g(case) + damping * np.eye(N), B)) < 1e-4
    assert np.array_equal(B, keep)


def test_gnh_solve_in_float32_is_accurate_to_float32(backend):
    case = SOLVE_CASES[1]
    c = curvature_for(case, backend, np.float32)
    G = oracle_g(case)
    B = np.random.default_rng(9).standard_normal((c.num_params, 2)).astype(np.float32)
    X = c.gnh_solve(B, 0.05)
    assert X.dtype == np.float32
    assert rel_err(X, np.linalg.solve(G + 0.05 * np.eye(c.num_params), B.astype(np.float64))) < 1e-4


def test_gnh_solve_chunks_and_reuse(backend):
    case = SOLVE_CASES[0]
    c = curvature_for(case, backend)
    B = np.random.default_rng(10).standard_normal((c.num_params, 2))
    ref = c.gnh_solve(B, 0.1)
    solver = c._solver
    assert rel_err(c.gnh_solve(B, 0.1, chunk_size=1), ref) < 1e-13  # the chunking changes only the order
    assert c._solver is solver  # same damping: the factorisation is reused
    c.gnh_solve(B, 0.2)
    assert c._solver is not solver
    assert c.gnh_solve(np.zeros((c.num_params, 0)), 0.1).shape == (c.num_params, 0)


def test_gnh_solve_without_damping_needs_weight_decay_and_no_biases(backend):
    case = SOLVE_CASES[3]  # no biases, λ = 0.1: G + 0·I = G is invertible
    c = curvature_for(case, backend)
    b = np.random.default_rng(11).standard_normal(c.num_params)
    assert rel_err(c.gnh_solve(b, 0.0), np.linalg.solve(c.gnh(), b)) < 1e-10
    c = curvature_for(SOLVE_CASES[0], backend)
    with pytest.raises(ValueError, match="damping must be > 0"):
        c.gnh_solve(np.ones(c.num_params), 0.0)


def test_gnh_solve_rejects_bad_input(backend):
    c = curvature_for(SOLVE_CASES[0], backend)
    N = c.num_params
    with pytest.raises(ValueError, match="damping"):
        c.gnh_solve(np.ones(N), -1.0)
    with pytest.raises(ValueError, match="damping"):
        c.gnh_solve(np.ones(N), float("nan"))
    with pytest.raises(ValueError, match="B must have shape"):
        c.gnh_solve(np.ones(N + 1), 1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        c.gnh_solve(np.ones(N), 1.0, chunk_size=0)
    peak = _gram.gram_bytes(c._model, c._lin.n, 1.0, _gram.default_chunk(c._lin.n, c._model.sizes[-1]))
    assert peak > 18 * 18 * 8  # the 18 × 18 matrix and the working memory beside it
    with pytest.raises(ValueError, match=rf"18 × 18 .*peak of {re.escape(_gram.human_bytes(peak))} .*max_size=5"):
        c.gnh_solve(np.ones(N), 1.0, max_size=5)


@pytest.mark.parametrize("damping", [1e-20, 1e-300, 5e-324])
def test_gnh_solve_names_a_damping_too_small_for_float64(backend, damping):
    """Below about ε·‖G‖ the damped G is numerically singular in float64 (the Gram's Cholesky fails, or the
    Gram overflows): a ValueError naming the damping, never a LinAlgError from inside or a NaN answer."""
    c = curvature_for(SOLVE_CASES[1], backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings on the way to the error either
        with pytest.raises(ValueError, match=rf"damping={damping!r} is too small for G: .*numerically singular"):
            c.gnh_solve(np.ones(c.num_params), damping)


def test_gnh_solve_warns_when_ill_conditioned(backend):
    """cond(G + δI) = 1 + ‖G‖/δ for a singular G: past 1e8 the solve warns with its lower bound, which the
    dense matrix's condition number must not undercut; at a moderate damping it stays silent."""
    from scipy.linalg import LinAlgWarning

    case = SOLVE_CASES[1]
    c = curvature_for(case, backend)
    N = c.num_params
    G = c.gnh()
    damping = np.linalg.eigvalsh(G)[-1] * 1e-10  # condition number about 1e10
    b = np.random.default_rng(12).standard_normal(N)
    with pytest.warns(LinAlgWarning, match=r"ill-conditioned .*condition number at least") as rec:
        x = c.gnh_solve(b, damping)
    bound = float(re.search(r"at least about ([0-9.e+]+)", str(rec[0].message)).group(1))
    assert bound <= np.linalg.cond(G + damping * np.eye(N)) * 1.01
    assert np.isfinite(x).all()
    assert rel_err((G + damping * np.eye(N)) @ x, b) < 1e-4  # backward stable: a small residual still
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c.gnh_solve(b, 1e-3)


# Routes of the solve: the Gram with the biases eliminated alongside the weights, the Gram of the weights with
# the biases through their Schur complement (weight decay far above the damping), and G + δI itself (N ≤ n·d).
ROUTE_CASES = {
    "woodbury": Case((3, 8, 3), "tanh", "mse", n=2, seed=49, l2=0.1),  # 11 biases > n·d = 6
    "biases apart": Case((3, 6, 3), "tanh", "mse", n=4, seed=48, l2=0.1),  # N = 45 > n·d = 12 > 9 biases
    "parameter": Case((2, 3, 2), "tanh", "mse", n=12, seed=46),  # N = 17 ≤ n·d = 24
    "parameter, l2": Case((3, 3, 2), "silu", "softmax_cross_entropy", n=10, seed=47, l2=0.05, reduction="sum"),
}


def dense_solve_error_bound(A: np.ndarray) -> float:
    """What a backward-stable float64 solve of A may lose: a multiple of cond(A)·ε, never below 1e-13."""
    return max(1e-13, 100 * np.linalg.cond(A) * np.finfo(np.float64).eps)


@pytest.mark.parametrize("damping", [1e-3, 1e-12, 1e-16, 0.0])
def test_gnh_solve_with_weight_decay_keeps_the_biases_apart(backend, damping):
    """With λ ≫ δ on the weights, D = δ + λP_W is far from a multiple of I: eliminating the biases through
    the Gram would cancel catastrophically (errors of order ε/δ). Solved apart, the answer is as accurate as
    G + δI is conditioned (about 3e4 here at any damping), without a warning, down to δ = 0."""
    case = ROUTE_CASES["biases apart"]
    c = curvature_for(case, backend)
    N = c.num_params
    A = oracle_g(case) + damping * np.eye(N)
    B = np.random.default_rng(13).standard_normal((N, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X = c.gnh_solve(B, damping)
    assert isinstance(c._solver[1], _gram.WoodburySolver) and c._solver[1].schur is not None
    assert rel_err(X, np.linalg.solve(A, B)) < max(dense_solve_error_bound(A), 1e-8)  # the oracle's own FD error
    assert rel_err(c.gnh() @ X + damping * X, B) < 1e-12


@pytest.mark.parametrize("name", ["parameter", "parameter, l2"])
@pytest.mark.parametrize("damping", [0.3, 1e-3, 1e-12])
def test_gnh_solve_in_the_parameter_space_when_n_d_is_larger(backend, name, damping):
    """N ≤ n·d: G + δI itself (N × N) is smaller than the Gram and, where G has full rank, far better
    conditioned than I + K; it is built from the factors in row chunks and factorised."""
    case = ROUTE_CASES[name]
    c = curvature_for(case, backend)
    N = c.num_params
    A = c.gnh() + damping * np.eye(N)
    B = np.random.default_rng(14).standard_normal((N, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the l2 case warns at 1e-12: G's output biases are near-singular
        X = c.gnh_solve(B, damping)
        assert isinstance(c._solver[1], _gram.ParameterSolver)
        assert rel_err(c.gnh_solve(B, damping, chunk_size=1), X) < 1e-12
    assert rel_err(X, np.linalg.solve(A, B)) < dense_solve_error_bound(A)
    assert rel_err(X, np.linalg.solve(oracle_g(case) + damping * np.eye(N), B)) < 1e-4 * max(1, np.linalg.cond(A) * 1e-8)


def test_gnh_solve_without_damping_where_g_has_full_rank(backend):
    """N ≤ n·d and G invertible: δ = 0 is allowed and exact; where G + λP_W is singular (softmax: the
    output biases' all-ones direction) δ = 0 is refused with the reason."""
    c = curvature_for(ROUTE_CASES["parameter"], backend)
    b = np.random.default_rng(15).standard_normal(c.num_params)
    G = c.gnh()
    assert rel_err(c.gnh_solve(b, 0.0), np.linalg.solve(G, b)) < dense_solve_error_bound(G)
    c = curvature_for(ROUTE_CASES["parameter, l2"], backend)
    with pytest.raises(ValueError, match=r"damping=0.0 is too small for G: .*numerically singular"):
        c.gnh_solve(np.ones(c.num_params), 0.0)
    c = curvature_for(ROUTE_CASES["woodbury"], backend)  # more biases than n·d: G + λP_W singular
    with pytest.raises(ValueError, match=r"damping must be > 0 .*biases carry no weight decay.*11 biases"):
        c.gnh_solve(np.ones(c.num_params), 0.0)


@pytest.mark.parametrize("name", list(ROUTE_CASES))
def test_gnh_solve_warns_and_refuses_by_the_conditioning_of_its_route(backend, name):
    """Each route's lower bound on cond(G + δI) never exceeds the true one, warns past 1e8 and refuses past
    1/ε; and every answer it returns is as accurate as that conditioning allows."""
    from scipy.linalg import LinAlgWarning

    case = ROUTE_CASES[name]
    c = curvature_for(case, backend)
    N = c.num_params
    G = c.gnh()
    b = np.random.default_rng(16).standard_normal(N)
    top = np.linalg.eigvalsh(G)[-1]
    for factor in (1e-6, 1e-10, 1e-13, 1e-17):
        damping = top * factor
        A = G + damping * np.eye(N)
        cond = np.linalg.cond(A)
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            try:
                x = c.gnh_solve(b, damping)
            except ValueError as err:
                assert cond > 1e14, (factor, cond, err)  # refused only where float64 holds little
                found = re.search(r"condition number is at least about ([0-9.e+-]+),", str(err))
                assert found is None or float(found.group(1)) <= cond * 1.01
                continue
        warned = [w for w in rec if issubclass(w.category, LinAlgWarning)]
        if warned:
            bound = float(re.search(r"at least about ([0-9.e+-]+)\)", str(warned[0].message)).group(1))
            assert 1e8 < bound <= cond * 1.01
        else:
            assert cond < 1e10, (factor, cond)  # silence only where the solve keeps most digits
        assert rel_err(x, np.linalg.solve(A, b)) < dense_solve_error_bound(A) * 10


def test_gnh_solve_reports_a_solution_that_overflows(backend):
    c = curvature_for(SOLVE_CASES[0], backend, np.float32)
    B = np.full(c.num_params, 3e37, dtype=np.float32)
    with pytest.raises(FloatingPointError, match=r"overflows float32 at damping=1e-06"):
        c.gnh_solve(B, 1e-6)


MEMORY_CASES = [  # (case, damping): matrices of 1.2–2.4 MB, far above the fixed slack of gram_bytes
    (Case((6, 20, 16, 4), "tanh", "mse", n=200, seed=46), 0.01),  # parameter space: N = 544 ≤ n·d = 800
    (Case((10, 40, 30, 3), "tanh", "mse", n=150, seed=47), 0.01),  # Woodbury: n·d = 450 < N = 1763
    (Case((10, 40, 30, 3), "tanh", "mse", n=150, seed=47, l2=1.0), 1e-4),  # the biases apart
]


@pytest.mark.parametrize("case, damping", MEMORY_CASES, ids=["parameter", "woodbury", "biases-apart"])
@pytest.mark.parametrize("chunk_size", [1, None])
def test_gnh_solve_peak_memory_is_gram_bytes(case, damping, chunk_size, backend):
    """tracemalloc (which sees NumPy's allocations) against the peak gram_bytes states: the matrix is built
    and factorised in place, with no second matrix beside it, so at chunk_size 1 the peak stays within
    1.4 matrices; a solve of one column may add 16·N + n·Σn_l numbers."""
    import tracemalloc

    from scipy.linalg import LinAlgWarning

    if backend == "cuda":
        pytest.skip("host memory only")
    c = curvature_for(case, backend)
    c.gnh_entries()
    model, n, N = c._model, case.n, c.num_params
    size = _gram.system_size(model, n)
    chunk = _gram.default_chunk(n, model.sizes[-1]) if chunk_size is None else chunk_size
    bound = _gram.gram_bytes(model, n, damping, chunk)
    if chunk_size == 1:
        assert bound < 1.4 * 8 * size * size
    b = np.random.default_rng(11).standard_normal(N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            x = c.gnh_solve(b, damping, chunk_size=chunk_size)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    assert 8 * size * size < peak <= bound + 8 * (16 * N + n * sum(model.sizes[1:]))
    if N < 1000:
        K = c.gnh() + damping * np.eye(N)
        assert rel_err(x, np.linalg.solve(K, b)) < 1e-10


# ---- the sampler: median of means --------------------------------------------------------------------------

MOM_CASE = Case((5, 8, 6, 4), "tanh", "softmax_cross_entropy", n=3000, seed=45, l2=0.05)


@cache
def mom_setup(backend: str):
    th, X, Y = MOM_CASE.data()
    c = MOM_CASE.net(backend).linearize(th, X, Y)
    return c.gnh_entries()


def test_median_of_means_sample_count():
    from pyhessk.curvature import GnhEntries

    # g = ⌈8 ln(1/δ)⌉ groups of ⌈4/ε²⌉ draws
    assert GnhEntries.num_samples(0.5, 0.01, "median_of_means") == 37 * 16
    assert GnhEntries.num_samples(0.1, 1e-6, "median_of_means") == 111 * 400
    assert GnhEntries.num_samples(0.1, 1e-6) == 10**8  # the plain mean needs far more for small δ
    assert GnhEntries.num_samples(1e-12, 1e-12, "median_of_means") == 2**63 - 1


def test_median_of_means_meets_its_bound(backend):
    """|Ĝ − G_pq| ≤ ε√(G_pp G_qq) with probability ≥ 1 − δ, over many seeds; reproducible per seed."""
    e = mom_setup(backend)
    N = MOM_CASE.net().num_params
    eps, delta = 0.5, 0.05
    groups, per_group = e._sampling_plan(eps, delta, "median_of_means")
    assert groups * per_group < MOM_CASE.n  # sampled with allow_exact=False, not the exact fallback
    rng = np.random.default_rng(12)
    for p, q in zip(rng.integers(0, N, 4), rng.integers(0, N, 4)):
        exact = float(e.entries([p], [q])[0])
        gpp, gqq = e.entries([p, q], [p, q])
        R = 300
        est = np.array([e.estimate([p], [q], eps=eps, delta=delta, seed=s, method="median_of_means",
                                   allow_exact=False)[0] for s in range(R)])
        assert np.mean(np.abs(est - exact) <= eps * np.sqrt(gpp * gqq)) >= 1 - delta - 0.03
        assert abs(np.median(est) - exact) <= 0.2 * eps * np.sqrt(gpp * gqq) + 1e-12
        assert np.unique(est).size > R // 2  # the draws really vary with the seed
    a = e.estimate([1, 2], [3, 4], eps=eps, delta=delta, seed=7, method="median_of_means", allow_exact=False)
    assert np.array_equal(a, e.estimate([1, 2], [3, 4], eps=eps, delta=delta, seed=7, method="median_of_means",
                                        allow_exact=False))


def test_estimate_rejects_an_unknown_method(backend):
    e = mom_setup(backend)
    with pytest.raises(ValueError, match="method must be one of"):
        e.estimate([0], [0], method="median")
