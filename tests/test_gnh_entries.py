"""Entrywise Gauss–Newton evaluation (SPEC §3) against the explicit Jᵀ H_out J, and the sampler's bound."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

import pyhessk as hk
from cases import CASE_IDS, CASES, Case
from oracles import explicit_gnh, rel_err

TOL = {np.dtype("float64"): 1e-7, np.dtype("float32"): 2e-4}


@cache
def oracle_g(case: Case) -> np.ndarray:
    return explicit_gnh(case, *case.data("float64"))


def entries_for(case: Case, backend: str, dtype):
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
    th, X, Y = (cast(a) for a in case.data("float64"))
    c = case.net(backend).linearize(th, X, Y)
    return c, c.gnh_entries()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_exact_access_matches_explicit_gnh(case, backend, dtype):
    c, e = entries_for(case, backend, dtype)
    G = oracle_g(case)
    N = c.num_params
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, N, 40), rng.integers(0, N, 40)
    rows[:5] = cols[:5]  # include diagonal entries (the λ term)
    vals = e.entries(rows, cols)
    assert vals.dtype == dtype and vals.shape == (40,)
    assert np.abs(vals - G[rows, cols]).max() <= TOL[dtype] * np.abs(G).max()
    I, J = rng.permutation(N)[: min(N, 9)], rng.integers(0, N, 7)
    B = e.block(I, J)
    assert B.shape == (I.size, 7) and rel_err(B, G[np.ix_(I, J)]) < TOL[dtype]
    assert rel_err(e.block(np.arange(N), np.arange(N)), G) < TOL[dtype]
    assert rel_err(e.diagonal(), np.diag(G)) < TOL[dtype]
    j = int(rng.integers(0, N))
    assert e.column(j).shape == (N,) and rel_err(e.column(j), G[:, j]) < TOL[dtype]
    assert rel_err(e.column(J), G[:, J]) < TOL[dtype]
    assert rel_err(e.column(np.arange(N)), c.gnh()) < TOL[dtype]


def test_entries_are_cached_per_snapshot(backend):
    c, e = entries_for(CASES[1], backend, np.float64)
    assert c.gnh_entries() is e


def test_scalar_and_2d_index_shapes(backend):
    c, e = entries_for(CASES[3], backend, np.float64)
    G = oracle_g(CASES[3])
    assert e.entries(3, 5).shape == () and abs(float(e.entries(3, 5)) - G[3, 5]) < 1e-7
    R = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="1-D"):
        e.block(R, R)
    assert e.entries([], []).shape == (0,)


def test_diagonal_sum_is_the_trace_of_g(backend):
    case = Case((4, 6, 5, 3), "softplus", "softmax_cross_entropy", n=9, seed=30, l2=0.3)
    c, e = entries_for(case, backend, np.float64)
    assert abs(e.diagonal().sum() - np.trace(oracle_g(case))) < 1e-7 * np.trace(oracle_g(case))


# ---- the sampled estimator -------------------------------------------------------------------------------

SAMPLER_CASE = Case((5, 8, 6, 3), "tanh", "softmax_cross_entropy", n=400, seed=31, l2=0.05)


# one output (d = 1): the norms ν are |S| there, computed without a square root on the C++ engine
SAMPLER_CASE_D1 = Case((5, 8, 6, 1), "tanh", "mse", n=400, seed=32, l2=0.05)


@cache
def sampler_setup(backend: str, case: Case = SAMPLER_CASE):
    th, X, Y = case.data()
    c = case.net(backend).linearize(th, X, Y)
    e = c.gnh_entries()
    N = c.num_params
    rng = np.random.default_rng(1)
    pairs = [(int(p), int(q)) for p, q in zip(rng.integers(0, N, 6), rng.integers(0, N, 6))] + [(7, 7), (3, N - 1)]
    return e, N, pairs


def test_estimate_is_reproducible_and_exact_when_s_exceeds_n(backend):
    e, N, pairs = sampler_setup(backend)
    rows, cols = np.array(pairs).T
    a = e.estimate(rows, cols, eps=0.5, delta=0.5, seed=3, allow_exact=False)
    b = e.estimate(rows, cols, eps=0.5, delta=0.5, seed=3, allow_exact=False)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, e.estimate(rows, cols, eps=0.5, delta=0.5, seed=4, allow_exact=False))
    assert e.num_samples(0.05, 0.01) == 40000  # ⌈1/(δ ε²)⌉ ≥ n = 400: the exact values come back
    assert np.array_equal(e.estimate(rows, cols, eps=0.05, delta=0.01, seed=0), e.entries(rows, cols))


@pytest.mark.parametrize("eps,delta,case", [(0.5, 0.5, SAMPLER_CASE), (0.4, 0.25, SAMPLER_CASE),
                                            (0.3, 0.2, SAMPLER_CASE), (0.4, 0.25, SAMPLER_CASE_D1)],
                         ids=["d3-0.5", "d3-0.4", "d3-0.3", "d1-0.4"])
def test_estimate_is_unbiased_within_its_variance_bound(backend, eps, delta, case):
    """SPEC §3: E Ĝ = G_pq, Var Ĝ ≤ G_pp G_qq / s, and |Ĝ − G_pq| ≤ ε√(G_pp G_qq) with probability ≥ 1 − δ."""
    e, N, pairs = sampler_setup(backend, case)
    s = e.num_samples(eps, delta)
    assert s < 400
    R = 4000
    for p, q in pairs:
        exact = float(e.entries([p], [q])[0])
        gpp, gqq = e.entries([p, q], [p, q])
        est = e.estimate(np.full(R, p), np.full(R, q), eps=eps, delta=delta, seed=p * N + q, allow_exact=False)
        lam = case.l2 if (p == q and p in weight_indices(case)) else 0.0
        var = est.var(ddof=1)
        bound = (gpp - lam) * (gqq - lam) / s  # the bound on the sampled part (the λ term is exact)
        assert abs(est.mean() - exact) <= 5 * np.sqrt(var / R) + 1e-12 * abs(exact)
        assert var <= 1.15 * bound + 1e-15
        coverage = np.mean(np.abs(est - exact) <= eps * np.sqrt(gpp * gqq))
        assert coverage >= 1 - delta - 0.02


def weight_indices(case: Case = SAMPLER_CASE) -> set[int]:
    from oracles import weight_mask

    return set(np.flatnonzero(weight_mask(case)).tolist())


def test_estimate_of_a_structural_zero_is_zero(backend):
    """ReLU units that are dead on every sample give zero rows of G; the sampler returns exactly 0 there."""
    case = Case((3, 4, 2), "relu", "mse", n=50, seed=32)
    th, X, Y = case.data()
    net = case.net(backend)
    Ws, bs = net.unflatten(th)
    bs[0][0] = -100.0  # unit 0 of the hidden layer never fires
    c = net.linearize(th, X, Y)
    e = c.gnh_entries()
    p = 0  # W_1[0, 0]
    est = e.estimate([p, p], [p, 5], eps=0.9, delta=0.9, seed=0, allow_exact=False)
    assert np.array_equal(est, np.zeros(2))
    assert np.array_equal(e.entries([p, p], [p, 5]), np.zeros(2))


def test_exact_or_sampled_follows_the_cost_rule(backend):
    """d = 10: at n = 400 an exact entry (4,000 numbers streamed) beats 80 draws of 10 scattered numbers, so
    the exact values come back; at n = 1,500 and 6,000 sampling pays (bench/results/sampler-scaling-*: with
    112 draws, exact and sampled cost the same at n = 1,000); allow_exact=False samples regardless."""
    for n, sampled in ((400, False), (1500, True), (6000, True)):
        case = Case((3, 4, 10), "tanh", "softmax_cross_entropy", n=n, seed=34)
        e = case.net(backend).linearize(*case.data()).gnh_entries()
        rows, cols = np.arange(5), np.arange(5, 10)
        assert e.num_samples(0.5, 0.05) == 80 and e.will_sample(0.5, 0.05) is sampled
        est = e.estimate(rows, cols, eps=0.5, delta=0.05, seed=2)
        assert np.array_equal(est, e.entries(rows, cols)) is not sampled
        assert not np.array_equal(e.estimate(rows, cols, eps=0.5, delta=0.05, seed=2, allow_exact=False),
                                  e.entries(rows, cols))
    with pytest.raises(TypeError, match="allow_exact must be a bool"):
        e.estimate(rows, cols, allow_exact="no")


def test_estimate_returns_exact_values_when_sampling_costs_more(backend):
    """With one output an exact entry costs n, sampling n + s: the exact value comes back."""
    case = Case((3, 6, 1), "tanh", "mse", n=300, seed=33)
    c = case.net(backend).linearize(*case.data())
    e = c.gnh_entries()
    rows, cols = np.arange(10), np.arange(10, 20)
    assert e.num_samples(0.5, 0.5) < 300
    assert np.array_equal(e.estimate(rows, cols, eps=0.5, delta=0.5, seed=1), e.entries(rows, cols))


def test_float32_sums_over_a_long_batch(backend):
    """The bias sums over samples accumulate in float64: with mse and one output, the output bias's entry of
    G (and of H) is exactly 1 at any n; float32 running sums over 2·10⁵ samples were off by up to 1e-3, and
    the cuda engine's float32 GEMMs against a vector of ones by 5.7e-5. (Sums inside float32 GEMMs, the
    weight entries, accumulate as the BLAS does.)"""
    n = 200_000
    net = hk.MLP([2, 3, 1], activation="tanh", loss="mse", backend=backend)
    rng = np.random.default_rng(31)
    theta = net.init(seed=31, dtype="float32")
    X, Y = rng.standard_normal((n, 2), dtype=np.float32), rng.standard_normal((n, 1), dtype=np.float32)
    c = net.linearize(theta, X, Y)
    e = c.gnh_entries()
    b = net.num_params - 1
    v = np.zeros(net.num_params, np.float32)
    v[b] = 1
    got = {"entries": e.entries([b], [b])[0], "diagonal": e.diagonal()[b], "column": e.column(b)[b],
           "e.gnvp": e.gnvp(v)[b], "c.gnvp": c.gnvp(v)[b], "c.hvp": c.hvp(v)[b],
           "block of 2": c.gnvp(np.stack([v, v], axis=1))[b, 1]}
    for name, value in got.items():
        assert abs(float(value) - 1.0) < 2e-6, (name, float(value))
