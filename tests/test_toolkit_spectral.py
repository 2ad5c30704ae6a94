"""Eigenpairs, SLQ, traces and diagonals (pyhessk.spectral) against the dense matrices.

Stochastic estimators are checked in distribution over many seeds (means within 5 standard errors of the
exact value, empirical variances against the stated formulas), never with one lucky seed.
"""

import itertools
import warnings

import numpy as np
import pytest
from cases import CASE_IDS, CASES, Case

import pyhessk as hk


def dense(c, kind):
    return c.hessian() if kind == "hessian" else c.gnh()


def snapshot(case, backend="numpy", dtype="float64"):
    return case.net(backend).linearize(*case.data(dtype))


# ---- eigsh ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_eigsh_matches_eigh(case, kind, backend):
    c = snapshot(case, backend)
    A = dense(c, kind)
    ev = np.linalg.eigvalsh(A)
    scale = max(1.0, np.abs(ev).max())
    k = min(3, c.num_params)
    for which, ref in (("LA", ev[::-1]), ("SA", ev), ("LM", ev[np.argsort(-np.abs(ev), kind="stable")])):
        vals, vecs = hk.eigsh(c, k=k, kind=kind, which=which, tol=1e-10, seed=1)
        assert vals.shape == (k,) and vecs.shape == (c.num_params, k)
        assert np.abs(vals - ref[:k]).max() <= 1e-8 * scale, which
        assert np.linalg.norm(A @ vecs - vecs * vals) <= 1e-6 * scale
        assert np.abs(vecs.T @ vecs - np.eye(k)).max() <= 1e-10


def test_eigsh_converges_before_the_krylov_space_fills():
    case = Case((8, 12, 10, 4), "tanh", "softmax_cross_entropy", n=40, seed=3)
    c = snapshot(case)
    N = c.num_params
    H = c.hessian()
    ev = np.linalg.eigvalsh(H)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vals, vecs = hk.eigsh(c, k=2, block_size=2, maxiter=40, tol=1e-9)  # a basis of 80 < N vectors
    assert N > 200
    assert np.abs(vals - ev[::-1][:2]).max() <= 1e-8 * np.abs(ev).max()
    overlap = np.abs(vecs.T @ np.linalg.eigh(H)[1][:, ::-1][:, :2])
    assert np.allclose(np.diag(overlap), 1.0, atol=1e-6)
    with pytest.warns(RuntimeWarning, match="maxiter"):
        hk.eigsh(c, k=2, maxiter=1)


EIGSH_SWEEP = [
    Case((4, 6, 2), "tanh", "mse", n=3, seed=2),  # rank G ≤ n·d = 6 < N = 44: a null space of dimension ≥ 38
    Case((3, 4), "tanh", "mse", n=10, seed=1),  # one layer: H = G = I₄ ⊗ Gram, every eigenvalue 4 times
    Case((3, 5, 4), "tanh", "softmax_cross_entropy", n=20, seed=0),
]


@pytest.mark.parametrize("case", EIGSH_SWEEP, ids=[c.id for c in EIGSH_SWEEP])
@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_eigsh_matches_eigvalsh_for_every_k_and_block_size(case, kind):
    c = snapshot(case)
    A = dense(c, kind)
    N = c.num_params
    ev = np.linalg.eigvalsh(A)
    scale = max(1.0, np.abs(ev).max())
    refs = {"LA": ev[::-1], "SA": ev, "LM": ev[np.argsort(-np.abs(ev), kind="stable")]}
    for which, k, b in itertools.product(refs, sorted({1, 3, 7, N // 2, N - 1, N}), (None, 1, 2, 5)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            vals, vecs = hk.eigsh(c, k=k, kind=kind, which=which, block_size=b, seed=1)
        assert vals.shape == (k,) and vecs.shape == (N, k), (which, k, b)
        got, want = (np.abs(vals), np.abs(refs[which][:k])) if which == "LM" else (vals, refs[which][:k])
        assert np.abs(got - want).max() <= 1e-7 * scale, (which, k, b)
        assert np.linalg.norm(A @ vecs - vecs * vals, axis=0).max() <= 1e-6 * scale, (which, k, b)
        assert np.abs(vecs.T @ vecs - np.eye(k)).max() <= 1e-10, (which, k, b)


def test_eigsh_finds_every_copy_of_the_null_space_with_a_narrow_block():
    c = snapshot(Case((20, 50, 10), "tanh", "softmax_cross_entropy", n=8, seed=2))  # N = 1560, rank G ≤ 72
    G = c.gnh()
    ev = np.linalg.eigvalsh(G)
    scale = ev[-1]
    vals, vecs = hk.eigsh(c, k=5, kind="gnh", which="SA", block_size=2)
    assert np.abs(vals).max() <= 1e-10 * scale
    assert np.linalg.norm(G @ vecs, axis=0).max() <= 1e-10 * scale
    vals, vecs = hk.eigsh(c, k=100, kind="gnh", block_size=10)  # the 28 or more zeros past rank G included
    assert vals.shape == (100,) and np.abs(vals - ev[::-1][:100]).max() <= 1e-10 * scale
    assert np.abs(vecs.T @ vecs - np.eye(100)).max() <= 1e-10
    with pytest.warns(RuntimeWarning, match="appeared 2 times among the wanted ones"):
        hk.eigsh(c, k=5, kind="gnh", which="SA", block_size=2, maxiter=34, tol=1e-5)


def test_eigsh_float32_and_reproducibility(dtype):
    case = CASES[3]
    c = snapshot(case, dtype=dtype)
    ev = np.linalg.eigvalsh(c.gnh().astype(np.float64))
    vals, vecs = hk.eigsh(c, k=2, kind="gnh", tol=1e-6 if dtype == np.float32 else 1e-10)
    assert vecs.dtype == dtype
    assert np.allclose(vals, ev[::-1][:2], rtol=1e-5 if dtype == np.float32 else 1e-10)
    again = hk.eigsh(c, k=2, kind="gnh", tol=1e-6 if dtype == np.float32 else 1e-10)
    assert np.array_equal(vals, again[0]) and np.array_equal(vecs, again[1])


def test_eigsh_arguments_are_checked():
    c = snapshot(CASES[0])
    for kwargs, match in (({"k": c.num_params + 1}, "k must be"), ({"which": "BE"}, "which"),
                          ({"kind": "fisher"}, "kind"), ({"k": 0}, "k must be"),
                          ({"k": 5, "block_size": 2, "maxiter": 2}, "maxiter·block_size must be at least k = 5")):
        with pytest.raises(ValueError, match=match):
            hk.eigsh(c, **kwargs)
    for which in (np.array(["LA", "SA"]), 3, None):
        with pytest.raises(TypeError, match="which must be a string"):
            hk.eigsh(c, which=which)


# ---- SLQ and the density ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES[:6], ids=CASE_IDS[:6])
@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_slq_is_gauss_quadrature(case, kind):
    c = snapshot(case)
    A = dense(c, kind)
    N = c.num_params
    V = np.random.default_rng(5).choice([-1.0, 1.0], size=(N, 3))
    m = 4
    nodes, weights = hk.slq(c, kind, steps=m, start=V)
    assert nodes.shape == weights.shape == (3, m)
    assert np.allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
    V = V / np.linalg.norm(V, axis=0)
    scale = np.abs(np.linalg.eigvalsh(A)).max()
    for p in range(2 * m):
        quad = (weights * nodes**p).sum(axis=1)
        exact = np.einsum("ir,ir->r", V, np.linalg.matrix_power(A, p) @ V)
        assert np.allclose(quad, exact, rtol=0, atol=1e-10 * scale**p), p


def test_slq_stops_when_the_krylov_space_closes():
    case = Case((4, 6, 2), "tanh", "mse", n=3, seed=2)  # rank G ≤ n·d = 6 < N = 44
    c = snapshot(case)
    G = c.gnh()
    v = np.random.default_rng(0).choice([-1.0, 1.0], size=c.num_params)
    nodes, weights = hk.slq(c, "gnh", steps=30, start=v)
    assert (weights[0] > 0).sum() <= 7 and np.isclose(weights.sum(), 1.0)
    v /= np.linalg.norm(v)
    for p in range(12):
        assert np.isclose((weights * nodes**p).sum(), v @ np.linalg.matrix_power(G, p) @ v,
                          rtol=1e-9, atol=1e-12), p


@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_spectral_density_integrates_to_one_and_keeps_the_mean(kind):
    case = CASES[9]
    c = snapshot(case)
    A = dense(c, kind)
    V = np.random.default_rng(7).choice([-1.0, 1.0], size=(c.num_params, 4))
    grid, dens = hk.spectral_density(c, kind, steps=20, start=V, num_bins=4000)
    assert grid.shape == dens.shape == (4000,) and np.all(dens >= 0)
    assert abs(np.trapezoid(dens, grid) - 1.0) < 1e-6
    V = V / np.linalg.norm(V, axis=0)
    mean = np.einsum("ir,ir->r", V, A @ V).mean()  # first moment of the quadrature, kept by the kernel
    assert abs(np.trapezoid(grid * dens, grid) - mean) < 1e-8 * np.abs(A).max()
    ev = np.linalg.eigvalsh(A)
    assert grid[0] < ev[0] and grid[-1] > ev[-1]


@pytest.mark.parametrize("num_bins", [38, 40, 50, 100, 1000])
@pytest.mark.parametrize("overhead", [0.0, 0.01, 2.0])
def test_spectral_density_on_a_coarse_grid_integrates_to_one_with_sigma_at_least_three_spacings(num_bins, overhead):
    c = snapshot(CASES[0])
    A = c.hessian()
    V = np.random.default_rng(3).choice([-1.0, 1.0], size=(c.num_params, 2))
    grid, dens = hk.spectral_density(c, steps=6, start=V, num_bins=num_bins, overhead=overhead)
    h = np.diff(grid)
    assert grid.shape == dens.shape == (num_bins,) and np.allclose(h, h[0], rtol=1e-9)
    assert abs(np.trapezoid(dens, grid) - 1.0) < 1e-7
    V = V / np.linalg.norm(V, axis=0)
    m1 = np.einsum("ir,ir->r", V, A @ V).mean()  # moments of the quadrature (exact to degree 11)
    m2 = np.einsum("ir,ir->r", A @ V, A @ V).mean()
    scale = np.abs(np.linalg.eigvalsh(A)).max()
    assert abs(np.trapezoid(grid * dens, grid) - m1) < 1e-7 * scale
    sigma = np.sqrt(np.trapezoid((grid - m1) ** 2 * dens, grid) - (m2 - m1**2))  # the kernel adds σ² to the variance
    assert sigma >= 3 * h[0] * (1 - 1e-5)


def test_spectral_density_arguments_are_checked_before_any_product(monkeypatch):
    from pyhessk import spectral

    c = snapshot(CASES[0])
    monkeypatch.setattr(spectral, "slq", lambda *args: pytest.fail("SLQ ran before the arguments were checked"))
    for kwargs, match in (({"num_bins": 37}, "num_bins must be at least 38"), ({"num_bins": 2}, "num_bins"),
                          ({"sigma_squared": 0.0}, "sigma_squared"), ({"overhead": -1.0}, "overhead")):
        with pytest.raises(ValueError, match=match):
            hk.spectral_density(c, **kwargs)
    with pytest.raises(TypeError, match="num_bins"):
        hk.spectral_density(c, num_bins=100.0)


def test_slq_start_vectors_are_checked():
    c = snapshot(CASES[0])
    for bad in (np.ones(2 * c.num_params), np.zeros(c.num_params), np.ones((c.num_params, 0))):
        with pytest.raises(ValueError, match="start"):
            hk.slq(c, start=bad)
    N = c.num_params
    for bad, exc in [(np.full(N, np.inf), ValueError), (np.full((N, 2), np.nan), ValueError),
                     (np.ones(N, dtype=complex), TypeError), ("abc", TypeError)]:
        with pytest.raises(exc, match="start"):
            hk.slq(c, start=bad)


@pytest.mark.parametrize("scale", [1e300, 1e-300])
def test_slq_start_vectors_of_any_finite_scale(scale):
    c = snapshot(CASES[0])
    V = np.random.default_rng(2).standard_normal((c.num_params, 2))
    want = hk.slq(c, steps=6, start=V)
    start = scale * V
    kept = start.copy()
    got = hk.slq(c, steps=6, start=start)
    assert np.array_equal(start, kept)
    for g, w in zip(got, want):
        assert np.allclose(g, w, rtol=1e-10, atol=1e-12)


def test_spectral_density_is_seeded():
    c = snapshot(CASES[3])
    g1, d1 = hk.spectral_density(c, runs=2, steps=10, seed=3, num_bins=500)
    g2, d2 = hk.spectral_density(c, runs=2, steps=10, seed=3, num_bins=500)
    g3, d3 = hk.spectral_density(c, runs=2, steps=10, seed=4, num_bins=500)
    assert np.array_equal(d1, d2) and np.array_equal(g1, g2) and not np.array_equal(d1, d3)


# ---- traces -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_exact_trace(kind, backend):
    c = snapshot(CASES[3], backend)
    assert np.isclose(hk.trace(c, kind, method="exact"), np.trace(dense(c, kind)), rtol=1e-12)


@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_hutchinson_trace_is_unbiased_with_the_stated_variance(kind):
    c = snapshot(CASES[9])
    A = dense(c, kind)
    m, seeds = 5, 300
    est = np.array([hk.trace(c, kind, method="hutchinson", probes=m, seed=s) for s in range(seeds)])
    var = 2.0 / m * ((A**2).sum() - (np.diag(A) ** 2).sum())
    assert abs(est.mean() - np.trace(A)) <= 5 * np.sqrt(var / seeds)
    assert 0.6 <= est.var(ddof=1) / var <= 1.5


def test_hutchpp_is_exact_for_low_rank_and_beats_hutchinson_on_g():
    low = snapshot(Case((4, 6, 2), "tanh", "softmax_cross_entropy", n=2, seed=1))  # rank G ≤ 4
    G = low.gnh()
    for seed in range(5):
        assert np.isclose(hk.trace(low, "gnh", method="hutch++", probes=15, seed=seed), np.trace(G), rtol=1e-10)
    c = snapshot(Case((4, 8, 3), "tanh", "softmax_cross_entropy", n=20, seed=2))
    exact = np.trace(c.gnh())
    seeds = range(200)
    hpp = np.array([hk.trace(c, "gnh", method="hutch++", probes=30, seed=s) for s in seeds])
    hut = np.array([hk.trace(c, "gnh", method="hutchinson", probes=30, seed=s) for s in seeds])
    assert abs(hpp.mean() - exact) <= 5 * hpp.std(ddof=1) / np.sqrt(len(hpp))  # unbiased
    assert ((hpp - exact) ** 2).mean() < 0.2 * ((hut - exact) ** 2).mean()


def test_trace_arguments_are_checked():
    c = snapshot(CASES[0])
    with pytest.raises(ValueError, match="method"):
        hk.trace(c, method="girard")
    with pytest.raises(ValueError, match="probes"):
        hk.trace(c, method="hutch++", probes=2)
    for method in ("exact", "hutchinson", "hutch++"):
        with pytest.raises(ValueError, match="block_size"):
            hk.trace(c, method=method, block_size=0)
        with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
            hk.trace(None, method=method)


def test_exact_hessian_trace_uses_block_size(monkeypatch):
    c = snapshot(CASES[3])
    widths = []
    original = hk.Curvature.hvp
    monkeypatch.setattr(hk.Curvature, "hvp", lambda self, V: widths.append(V.shape[1]) or original(self, V))
    assert np.isclose(hk.trace(c, "hessian", method="exact", block_size=5), np.trace(c.hessian()), rtol=1e-12)
    assert max(widths) == 5 and sum(widths) == c.num_params


def test_hutchinson_trace_draws_its_probes_block_by_block(monkeypatch):
    from pyhessk import spectral

    c = snapshot(CASES[3])
    drawn = []
    original = spectral._rademacher
    monkeypatch.setattr(spectral, "_rademacher", lambda rng, N, m: drawn.append(m) or original(rng, N, m))
    est = hk.trace(c, "gnh", method="hutchinson", probes=12, block_size=5, seed=4)
    assert drawn == [5, 5, 2]
    V = original(np.random.default_rng(4), c.num_params, 12)  # the blocks together are one draw of 12
    assert np.isclose(est, np.einsum("ij,ij->", V, c.gnh() @ V) / 12, rtol=1e-12)


@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_hutchinson_estimates_do_not_depend_on_block_size(kind):
    c = snapshot(CASES[3])
    A = dense(c, kind)
    N = c.num_params
    V = 2.0 * np.random.default_rng(4).integers(0, 2, size=(12, N)).T - 1  # the 12 probes of seed 4
    trace, diag = np.einsum("ij,ij->", V, A @ V) / 12, np.einsum("ij,ij->i", V, A @ V) / 12
    for block_size in (1, 5, 12, 64):
        assert np.isclose(hk.trace(c, kind, "hutchinson", probes=12, seed=4, block_size=block_size), trace,
                          rtol=1e-12, atol=1e-14), block_size
        assert np.allclose(hk.diagonal(c, kind, "hutchinson", probes=12, seed=4, block_size=block_size), diag,
                           rtol=1e-12, atol=1e-14), block_size
    hpp = [hk.trace(c, kind, "hutch++", probes=12, seed=4, block_size=bs) for bs in (1, 5, 64)]
    assert np.allclose(hpp, hpp[0], rtol=1e-12, atol=1e-14)


# ---- diagonals --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_exact_diagonals(case, backend):
    c = snapshot(case, backend)
    for kind in ("hessian", "gnh"):
        d = hk.diagonal(c, kind, "exact", block_size=7)
        assert d.shape == (c.num_params,)
        assert np.abs(d - np.diag(dense(c, kind))).max() <= 1e-12 * max(1.0, np.abs(np.diag(dense(c, kind))).max())


@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_hutchinson_diagonal_is_unbiased_with_the_stated_variance(kind):
    c = snapshot(CASES[0])
    A = dense(c, kind)
    m, seeds = 4, 300
    est = np.array([hk.diagonal(c, kind, "hutchinson", probes=m, seed=s, block_size=3) for s in range(seeds)])
    var = ((A**2).sum(axis=1) - np.diag(A) ** 2) / m
    assert np.all(np.abs(est.mean(axis=0) - np.diag(A)) <= 5 * np.sqrt(var / seeds) + 1e-14)
    ratio = est.var(axis=0, ddof=1)[var > 0] / var[var > 0]
    assert 0.85 <= ratio.mean() <= 1.15


def test_diagonal_arguments_are_checked():
    c = snapshot(CASES[0])
    with pytest.raises(ValueError, match="method"):
        hk.diagonal(c, method="mc")
    with pytest.raises(ValueError, match="data="):
        hk.diagonal(c, method="becker_lecun")
    theta, X, Y = CASES[0].data()
    with pytest.raises(ValueError, match="snapshot"):
        hk.diagonal(c, method="becker_lecun", data=(theta + 1.0, X, Y))
    for data, exc in [((theta, X), ValueError), (theta, TypeError)]:
        with pytest.raises(exc, match=r"data must be the tuple \(theta, X, Y\)"):
            hk.diagonal(c, method="becker_lecun", data=data)
    for kind in ("gnh", "hessian"):
        with pytest.raises(ValueError, match="block_size"):
            hk.diagonal(c, kind, "exact", block_size=0)
        with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
            hk.diagonal(None, kind, "exact")


@pytest.mark.parametrize("fn", [hk.eigsh, hk.slq, hk.spectral_density, hk.trace, hk.diagonal])
def test_a_snapshot_that_is_not_one_is_named(fn):
    with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
        fn(np.eye(3))
