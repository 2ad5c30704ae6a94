"""HODLR compression of G + λI (pyhessk.gnh_hodlr) against the dense c.gnh() + λI on small nets."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy.sparse.linalg import cg

import pyhessk as hk
from cases import Case

# n·d = 18 ≪ N = 247: every off-diagonal block of G has rank ≤ 18, so the compression has something to find
LOW_RANK = Case((6, 12, 10, 3), "tanh", "softmax_cross_entropy", n=6, seed=21, l2=0.01)
# n·d = 120 < N = 258 but the blocks are nearly full rank at tight tolerances
WIDE = Case((6, 12, 10, 4), "softplus", "mse", n=30, seed=22)
EXACT_TOL = {np.dtype("float64"): 1e-11, np.dtype("float32"): 2e-5}


def snapshot(case: Case, backend: str = "numpy", dtype="float64") -> hk.Curvature:
    th, X, Y = case.data(dtype)
    return case.net(backend).linearize(th, X, Y)


@cache
def dense_k(case: Case, damping: float) -> np.ndarray:
    c = snapshot(case)
    return c.gnh() + damping * np.eye(c.num_params)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / np.linalg.norm(b))


@pytest.mark.parametrize("case", [LOW_RANK, WIDE], ids=["low-rank", "wide"])
def test_tol_zero_is_exact(case, backend, dtype):
    c = snapshot(case, backend, dtype)
    K = dense_k(case, 0.3)
    H = hk.gnh_hodlr(c, 0.3, tol=0.0, leaf_size=16)
    assert rel(H.to_dense(), K) < EXACT_TOL[dtype]
    V = np.random.default_rng(0).standard_normal((c.num_params, 3)).astype(dtype)
    KV = H @ V
    assert KV.dtype == dtype and KV.shape == V.shape
    assert rel(KV, K @ V.astype(np.float64)) < EXACT_TOL[dtype]
    X = H.solve(V)
    assert X.dtype == dtype and rel(X, np.linalg.solve(K, V.astype(np.float64))) < 20 * EXACT_TOL[dtype]


@pytest.mark.parametrize("case", [WIDE, Case((5, 7, 40), "tanh", "sigmoid_cross_entropy", n=4, seed=23)],
                         ids=["mse", "sigmoid-ce"])
def test_sparse_output_blocks_are_not_missed(case):
    # a diagonal output Hessian makes the output layer's weight blocks block-diagonal: ACA's own estimate
    # stops too early there, the residual sketch must not
    c = snapshot(case)
    K = dense_k(case, 0.05)
    for tol in (1e-2, 1e-6):
        H = hk.gnh_hodlr(c, 0.05, tol=tol, leaf_size=16)
        assert rel(H.to_dense(), K) <= 2 * tol


def test_low_rank_blocks_are_found_and_exact(backend):
    c = snapshot(LOW_RANK, backend)
    H = hk.gnh_hodlr(c, 0.1, tol=1e-10, leaf_size=16)
    rep = H.report(dense=dense_k(LOW_RANK, 0.1))
    assert rep.max_rank_used <= LOW_RANK.n * LOW_RANK.sizes[-1]
    assert rep.rank_limited_blocks == 0  # (blocks too small to save memory at rank ≤ 18 are stored dense)
    assert rep.stored < 0.6 * c.num_params**2
    assert rep.matvec_rel_fro < 1e-9 and rep.solve_rel_error < 1e-8


@pytest.mark.parametrize("tol", [1e-1, 1e-3, 1e-6])
@pytest.mark.parametrize("case", [LOW_RANK, WIDE], ids=["low-rank", "wide"])
def test_matvec_error_follows_tol(case, tol):
    c = snapshot(case)
    K = dense_k(case, 0.05)
    H = hk.gnh_hodlr(c, 0.05, tol=tol, leaf_size=16, seed=3)
    err = rel(H.to_dense(), K)
    assert err <= 2 * tol
    v = np.random.default_rng(1).standard_normal(c.num_params)
    assert rel(H @ v, K @ v) <= 4 * tol


def test_float32_follows_tol(backend):
    c = snapshot(WIDE, backend, "float32")
    K = dense_k(WIDE, 0.05)
    for tol in (1e-1, 1e-3):
        H = hk.gnh_hodlr(c, 0.05, tol=tol, leaf_size=16)
        assert rel(H.to_dense(), K) <= 2 * tol
        v = np.random.default_rng(6).standard_normal(c.num_params).astype(np.float32)
        assert (H @ v).dtype == np.float32 and rel(H @ v, K @ v.astype(np.float64)) <= 4 * tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_singular_without_damping_is_an_error(backend, dtype):
    """G has rank ≤ n·d < N: with λ = 0 the factorization must refuse, not return a meaningless solve. In
    float32 the singular blocks factor in float64 with pivots at float32's rounding level, which counts as
    singular too (before, they returned solutions of norm ~1e13 with residuals ~100)."""
    for case in (LOW_RANK, WIDE):
        H = hk.gnh_hodlr(snapshot(case, backend, dtype), 0.0, tol=1e-8, leaf_size=16)
        with pytest.raises(np.linalg.LinAlgError, match="damping"):
            H.solve(np.ones(H.shape[0], dtype=dtype))


@pytest.mark.parametrize("tol", [1e-2, 1e-5])
def test_solve_meets_its_tolerance(tol):
    case, lam = WIDE, 0.2
    c = snapshot(case)
    K = dense_k(case, lam)
    H = hk.gnh_hodlr(c, lam, tol=tol, leaf_size=16)
    B = np.random.default_rng(2).standard_normal((c.num_params, 4))
    X = H.solve(B)
    # the factorization solves K̃ exactly ...
    assert rel(X, np.linalg.solve(H.to_dense(), B)) < 1e-10
    # ... so the backward error against K is that of the compression: ‖K x − b‖ ≤ ‖K − K̃‖ ‖x‖
    kt_err = np.linalg.norm(H.to_dense() - K, 2)
    for j in range(B.shape[1]):
        assert np.linalg.norm(K @ X[:, j] - B[:, j]) <= 1.01 * kt_err * np.linalg.norm(X[:, j]) + 1e-12
    assert kt_err <= 2 * tol * np.linalg.norm(K, 2) * np.sqrt(c.num_params / 16)
    forward = rel(X, np.linalg.solve(K, B))
    assert forward <= 2 * tol * np.linalg.cond(K)
    # the factorization is kept and reused
    assert H.factorize() is H and rel(H.solve(B[:, 0]), X[:, 0]) < 1e-14


def test_ranks_and_memory_shrink_as_tol_grows():
    c = snapshot(WIDE)
    reps = [hk.gnh_hodlr(c, 0.05, tol=t, leaf_size=16).report() for t in (1e-8, 1e-4, 1e-2, 3e-1)]
    stored = [r.stored for r in reps]
    top = [r.levels[0]["max_rank"] for r in reps]
    assert stored == sorted(stored, reverse=True) and stored[-1] < stored[0]
    assert top == sorted(top, reverse=True) and top[-1] < top[0]
    assert reps[-1].memory_ratio < 0.5


def test_max_rank_caps_every_block():
    c = snapshot(WIDE)
    H = hk.gnh_hodlr(c, 0.05, tol=1e-8, max_rank=3, leaf_size=16)
    rep = H.report(dense=dense_k(WIDE, 0.05))
    assert all(r <= 3 for rs in H.ranks().values() for r in rs)
    assert rep.rank_limited_blocks > 0 and rep.dense_blocks == 0
    assert rep.matvec_rel_fro < 0.5
    big = hk.gnh_hodlr(c, 0.05, tol=0.0, max_rank=10_000, leaf_size=16)
    assert rel(big.to_dense(), dense_k(WIDE, 0.05)) < 1e-11


def test_no_block_stores_more_than_dense():
    """A max_rank between a block's break-even rank m·k/(m + k) and its side min(m, k) must not store larger
    (and inexact) factors where the dense block is smaller and exact."""
    net = hk.MLP([8, 32, 32, 3], activation="tanh", loss="cross_entropy", backend="numpy")
    rng = np.random.default_rng(0)
    c = net.linearize(net.init(seed=0), rng.standard_normal((50, 8)), rng.integers(0, 3, 50))
    H = hk.gnh_hodlr(c, 0.01, tol=1e-3, leaf_size=32, max_rank=40)
    inner = [nd for nd in H._nodes() if nd.children is not None]
    assert all(nd.stored <= nd.children[0].size * nd.children[1].size for nd in inner)
    assert any(nd.V is None and nd.children[0].size == 45 for nd in inner)  # 45 × 45 blocks of rank > 22


def test_max_rank_below_the_side_stores_needy_blocks_dense():
    """max_rank = 5 lies above the break-even rank m·k/(m + k) of the small blocks (4 for 9 × 9): where the
    tolerance needs more, they are stored dense and exact, and ranks() reports them at min(m, k), up to 9
    past max_rank, as gnh_hodlr's docstring says; every block kept as factors has rank at most max_rank."""
    net = hk.MLP([5, 9, 7, 3], activation="tanh", loss="mse", backend="numpy")
    rng = np.random.default_rng(0)
    c = net.linearize(net.init(seed=1), rng.standard_normal((7, 5)), rng.standard_normal((7, 3)))
    K = c.gnh() + 0.1 * np.eye(c.num_params)
    H = hk.gnh_hodlr(c, 0.1, tol=1e-8, max_rank=5, leaf_size=8)
    inner = [nd for nd in H._nodes() if nd.children is not None]
    dense = [nd for nd in inner if nd.V is None]
    assert dense and H.report().max_rank_used > 5
    for nd in inner:
        A, B = (np.arange(ch.start, ch.stop) for ch in nd.children)
        m, k = A.size, B.size
        if nd.V is None:
            assert nd.rank == min(m, k) and 5 > m * k // (m + k)
            assert rel(nd.U, K[np.ix_(A, B)]) < 1e-13
        else:
            assert nd.rank <= 5
    doc = hk.gnh_hodlr.__doc__
    entry = doc[doc.index("max_rank:") : doc.index("leaf_size:")]
    assert "dense" in entry and "break-even" in entry and "min(m, k)" in entry


def test_never_forms_the_dense_matrix(monkeypatch):
    c = snapshot(LOW_RANK)
    c.gnh_entries()

    def refuse(*args, **kwargs):
        raise AssertionError("the dense matrix or a Hessian product was used")

    for name in ("gnh", "hvp", "hessian"):
        monkeypatch.setattr(hk.Curvature, name, refuse)
    products = []
    plain = hk.Curvature.gnvp
    monkeypatch.setattr(hk.Curvature, "gnvp", lambda self, V: products.append(np.shape(V)) or plain(self, V))
    H = hk.gnh_hodlr(c, 0.1, tol=1e-6, leaf_size=16)
    H.solve(np.ones(c.num_params))
    N = c.num_params
    assert H.entries_evaluated < 0.7 * N * N
    assert H.report().entries_evaluated == H.entries_evaluated
    # the residual sketches: a few product columns per compressed block, not N of them
    assert sum(s[1] for s in products) == H.probe_products < N / 2


def test_inputs_untouched_and_single_vectors():
    c = snapshot(LOW_RANK)
    H = hk.gnh_hodlr(c, 0.1, tol=1e-8, leaf_size=16)
    v = np.random.default_rng(4).standard_normal(c.num_params)
    keep = v.copy()
    y, x = H @ v, H.solve(v)
    assert y.shape == x.shape == (c.num_params,)
    assert np.array_equal(v, keep)
    assert rel(H @ x, v) < 1e-10
    V = np.asfortranarray(np.stack([v, 2 * v], axis=1))  # non-contiguous blocks are accepted
    assert rel((H @ V)[:, 1], 2 * y) < 1e-14


def test_inverse_is_a_preconditioner_for_cg():
    case, lam = WIDE, 0.01
    c = snapshot(case)
    b = np.random.default_rng(5).standard_normal(c.num_params)
    H = hk.gnh_hodlr(c, lam, tol=1e-3, leaf_size=16)
    op = c.linear_operator("gnh", lam)
    counts = {}
    for name, M in (("plain", None), ("hodlr", H.linear_operator(inverse=True))):
        steps = []
        x, info = cg(op, b, rtol=1e-10, maxiter=2000, M=M, callback=steps.append)
        assert info == 0 and rel(x, np.linalg.solve(dense_k(case, lam), b)) < 1e-7
        counts[name] = len(steps)
    assert counts["hodlr"] < counts["plain"]
    assert rel(H.linear_operator() @ b, H @ b) == 0.0


def test_inverse_preconditions_cg_on_a_float32_snapshot():
    # SciPy's cg and pyhessk.linalg.cg hand the preconditioner float64 iterates: the operator casts them,
    # while @ and solve keep refusing a dtype other than the snapshot's
    case, lam = WIDE, 0.01
    c = snapshot(case, dtype="float32")
    K = c.gnh().astype(np.float64) + lam * np.eye(c.num_params)  # the float32 snapshot's K, cond(K) ≈ 1.4e3
    b = np.random.default_rng(5).standard_normal(c.num_params).astype(np.float32)
    x_dense = np.linalg.solve(K, b.astype(np.float64))
    H = hk.gnh_hodlr(c, lam, tol=1e-3, leaf_size=16)
    M = H.linear_operator(inverse=True)
    op = c.linear_operator("gnh", lam)
    plain = hk.linalg.cg(op, b, rtol=1e-6)
    pre = hk.linalg.cg(op, b, rtol=1e-6, M=M)
    assert pre.converged.all() and pre.iterations[0] < plain.iterations[0] / 5
    assert rel(pre.x, x_dense) < 1e-4
    x, info = cg(op, b.astype(np.float64), rtol=1e-6, M=M)
    assert info == 0 and rel(x, x_dense) < 1e-4
    y = M @ b.astype(np.float64)
    assert y.dtype == np.float32 and rel(y, H.solve(b)) == 0.0
    assert rel(H.linear_operator() @ b.astype(np.float64), H @ b) == 0.0
    for apply in (H.solve, H.matmat):
        with pytest.raises(TypeError, match="float64"):
            apply(b.astype(np.float64))


def test_zero_rows_of_dead_units_are_handled():
    """A ReLU layer whose first 20 units never fire: their 420 parameters have zero rows in G, so whole
    off-diagonal blocks are zero (ACA must stop at rank 0 without a pivot). Matvec and solve against dense."""
    rng = np.random.default_rng(0)
    net = hk.MLP([20, 40, 3], activation="relu", loss="mse", backend="numpy")
    th = net.init(seed=1)
    Ws, bs = net.unflatten(th)
    Ws[0][:20], bs[0][:20] = 0.0, -1.0  # pre-activation −1 on every sample
    c = net.linearize(th, rng.standard_normal((30, 20)), rng.standard_normal((30, 3)))
    K = c.gnh() + 0.3 * np.eye(c.num_params)
    assert (np.abs(K - 0.3 * np.eye(c.num_params)).sum(axis=1) == 0).sum() == 480
    V = rng.standard_normal((c.num_params, 2))
    for tol in (1e-10, 1e-4):
        H = hk.gnh_hodlr(c, 0.3, tol=tol, leaf_size=32)
        assert rel(H @ V, K @ V) < max(tol, 1e-13)
        assert rel(H.solve(V), np.linalg.solve(K, V)) < max(10 * tol, 1e-12)


def test_report_text_and_fields():
    c = snapshot(LOW_RANK)
    H = hk.gnh_hodlr(c, 0.1, tol=1e-4, leaf_size=16)
    rep = H.report(dense=True)
    text = str(rep)
    assert "level" in text and "N²" in text and "solve" in text
    assert [lv["level"] for lv in rep.levels] == sorted(lv["level"] for lv in rep.levels)
    assert sum(lv["blocks"] for lv in rep.levels) == sum(len(r) for r in H.ranks().values())
    assert np.isfinite([rep.matvec_rel_fro, rep.matvec_rel_spectral, rep.solve_rel_error, rep.cond_estimate]).all()
    assert np.isnan(H.report().matvec_rel_fro) and "HodlrMatrix(N=247" in repr(H)


def test_report_of_a_singular_matrix_keeps_what_it_can_measure():
    # N = 247 > n·d = 18: G is singular, so with damping 0 neither K̃ nor K can be solved
    H = hk.gnh_hodlr(snapshot(LOW_RANK), 0.0, tol=1e-10, leaf_size=16)
    rep = H.report(dense=True)
    assert rep.matvec_rel_fro < 1e-6 and np.isfinite(rep.matvec_rel_spectral)
    assert np.isnan(rep.solve_rel_error) and np.isnan(rep.solve_rel_residual)
    assert "singular" in rep.solve_failed and "solve: not possible" in str(rep)
    assert H.report(dense=dense_k(LOW_RANK, 0.0)).solve_failed == rep.solve_failed
    assert not hk.gnh_hodlr(snapshot(LOW_RANK), 0.1, tol=1e-4, leaf_size=16).report(dense=True).solve_failed


def test_report_compares_no_solve_against_a_numerically_singular_k():
    # N = 258 > n·d = 120: G is singular, yet rounding makes K = G + 0·I invertible to numpy.linalg.solve,
    # and at tol 0.1 the indefinite K̃ factors: no solve error against K can mean anything
    c = snapshot(WIDE)
    K = dense_k(WIDE, 0.0)
    H = hk.gnh_hodlr(c, 0.0, tol=0.1, leaf_size=16)
    assert np.isfinite(H.solve(np.ones(c.num_params))).all()
    for dense in (True, K):
        rep = H.report(dense=dense)
        assert rep.cond_estimate == pytest.approx(np.linalg.cond(K), rel=1e-6)
        assert rep.cond_estimate > 1 / np.finfo(np.float64).eps
        assert np.isnan(rep.solve_rel_error) and np.isnan(rep.solve_rel_residual)
        assert f"cond(K) = {rep.cond_estimate:.3e}" in rep.solve_failed and "solve: not possible" in str(rep)
        assert rel(H.to_dense(), K) == pytest.approx(rep.matvec_rel_fro, rel=1e-12)


def test_leaf_as_large_as_the_matrix_is_one_dense_block():
    c = snapshot(LOW_RANK)
    H = hk.gnh_hodlr(c, 0.1, leaf_size=c.num_params)
    assert H.ranks() == {} and H.stored == c.num_params**2
    assert rel(H.to_dense(), dense_k(LOW_RANK, 0.1)) < 1e-13


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"damping": -1.0}, ValueError, "damping"),
        ({"damping": float("nan")}, ValueError, "damping"),
        ({"damping": "1"}, TypeError, "damping"),
        ({"tol": 1.0}, ValueError, "tol"),
        ({"tol": -1e-3}, ValueError, "tol"),
        ({"max_rank": 0}, ValueError, "max_rank"),
        ({"max_rank": 2.5}, TypeError, "max_rank"),
        ({"leaf_size": 0}, ValueError, "leaf_size"),
        ({"leaf_size": True}, TypeError, "leaf_size"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    c = snapshot(LOW_RANK)
    args = {"damping": 0.1, **kwargs}
    with pytest.raises(exc, match=match):
        hk.gnh_hodlr(c, **args)


def test_bad_vectors_and_curvature():
    with pytest.raises(TypeError, match="Curvature"):
        hk.gnh_hodlr(np.eye(3), 0.1)
    c = snapshot(LOW_RANK)
    N = c.num_params
    H = hk.gnh_hodlr(c, 0.1, leaf_size=16)
    with pytest.raises(ValueError, match=rf"\({N},\)"):
        H @ np.ones(N + 1)
    with pytest.raises(ValueError, match="B must have shape"):
        H.solve(np.ones((N - 1, 2)))
    with pytest.raises(TypeError, match="float32"):
        H @ np.ones(N, dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        H.solve(np.full(N, np.nan))
    with pytest.raises(ValueError, match="dense must have shape"):
        H.report(dense=np.eye(3))
    with pytest.raises(TypeError, match="inverse"):
        H.linear_operator(inverse="yes")


def test_report_against_a_zero_matrix():
    net = hk.MLP([3, 2], loss="mse", bias=False, backend="numpy")
    c = net.linearize(np.zeros(net.num_params), np.zeros((5, 3)), np.ones((5, 2)))  # G = 0
    rep = hk.gnh_hodlr(c, 0.0, leaf_size=2).report(dense=True)  # K̃ = K = 0
    assert rep.matvec_rel_fro == rep.matvec_rel_spectral == rep.matvec_rel_random == 0.0
    assert rep.solve_failed and "singular" in str(rep)
    rep = hk.gnh_hodlr(c, 0.1, leaf_size=2).report(dense=np.zeros((6, 6)))  # K̃ = 0.1·I against K = 0
    assert rep.matvec_rel_fro == rep.matvec_rel_spectral == rep.matvec_rel_random == np.inf


def test_docstring_example():
    import doctest

    import pyhessk.hodlr

    result = doctest.testmod(pyhessk.hodlr, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
