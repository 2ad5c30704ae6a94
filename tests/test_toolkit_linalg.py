"""Linear operators and CG (pyhessk.linalg) against dense matrices and SciPy."""

import numpy as np
import pytest
import scipy.sparse.linalg as ssl
from cases import CASES, CASE_IDS, Case

import pyhessk as hk

OPERATOR_CASES = [CASES[0], CASES[3], CASES[6], CASES[9]]


@pytest.fixture(params=OPERATOR_CASES, ids=[c.id for c in OPERATOR_CASES])
def case(request) -> Case:
    return request.param


@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_operator_equals_the_dense_matrix(case, kind, backend, dtype):
    net = case.net(backend)
    theta, X, Y = case.data(dtype)
    c = net.linearize(theta, X, Y)
    dense = c.hessian() if kind == "hessian" else c.gnh()
    N = net.num_params
    op = c.linear_operator(kind, damping=0.3)
    assert isinstance(op, ssl.LinearOperator) and op.shape == (N, N) and op.dtype == dtype
    ref = dense.astype(np.float64) + 0.3 * np.eye(N)
    V = np.random.default_rng(0).standard_normal((N, 4)).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got, want in [(op @ V, ref @ V), (op.matmat(V), ref @ V), (op.matvec(V[:, 0]), ref @ V[:, 0]),
                      (op.rmatvec(V[:, 1]), ref @ V[:, 1]), (op.H @ V, ref @ V), (V.T @ op, V.T @ ref)]:
        assert got.dtype == dtype
        assert np.abs(got - want).max() <= tol * np.abs(ref).max() * np.abs(V).max() * N


def test_operator_uses_one_block_product(monkeypatch):
    case = CASES[0]
    c = case.net().linearize(*case.data())
    calls = []
    original = hk.Curvature.gnvp
    monkeypatch.setattr(hk.Curvature, "gnvp", lambda self, V: calls.append(np.shape(V)) or original(self, V))
    c.linear_operator("gnh").matmat(np.ones((c.num_params, 7)))
    assert calls == [(c.num_params, 7)]


def test_scipy_solvers_run_on_the_operator():
    case = CASES[3]
    theta, X, Y = case.data()
    c = case.net().linearize(theta, X, Y)
    G = c.gnh() + 0.5 * np.eye(c.num_params)
    b = np.random.default_rng(1).standard_normal(c.num_params)
    op = c.linear_operator("gnh", damping=0.5)
    for solver in (ssl.cg, ssl.minres):
        x, info = solver(op, b, rtol=1e-12, maxiter=2000)
        assert info == 0 and np.linalg.norm(G @ x - b) < 1e-9 * np.linalg.norm(b)
    top = ssl.eigsh(c.linear_operator("hessian"), k=2, which="LA", return_eigenvectors=False)
    assert np.allclose(np.sort(top), np.linalg.eigvalsh(c.hessian())[-2:], rtol=1e-8, atol=1e-10)


def test_kind_and_damping_are_checked():
    case = CASES[0]
    c = case.net().linearize(*case.data())
    with pytest.raises(ValueError, match="kind"):
        c.linear_operator("fisher")
    with pytest.raises(ValueError, match="damping"):
        c.linear_operator("gnh", damping=-1.0)


@pytest.mark.parametrize("make", [hk.as_linear_operator, hk.inverse_operator,
                                  lambda c: hk.linalg.product(c, "gnh")])
def test_operators_name_a_snapshot_that_is_not_one(make):
    with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
        make(None)
    with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
        make(np.eye(3))


def test_product_checks_its_damping():
    case = CASES[0]
    c = case.net().linearize(*case.data())
    for damping, exc in [(float("nan"), ValueError), (-1.0, ValueError), ("0.1", TypeError)]:
        with pytest.raises(exc, match="damping"):
            hk.linalg.product(c, "gnh", damping)


# ---- CG ---------------------------------------------------------------------------------------------
def spd_system(seed=0, N=30, k=3):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((N, N)))[0]
    A = Q @ np.diag(np.geomspace(0.1, 10.0, N)) @ Q.T
    return A, rng.standard_normal((N, k))


@pytest.mark.parametrize("maxiter", [1, 3, 8, 12])
@pytest.mark.parametrize("precondition", [False, True])
def test_cg_iterates_match_scipy(maxiter, precondition):
    A, B = spd_system()
    d = np.diag(A).copy()
    M = (lambda R: R / d[:, None]) if precondition else None
    Ms = ssl.LinearOperator(A.shape, matvec=lambda r: r.ravel() / d) if precondition else None
    ours = hk.cg(lambda V: A @ V, B, rtol=1e-14, maxiter=maxiter, M=M)
    for j in range(B.shape[1]):
        ref, _ = ssl.cg(A, B[:, j], rtol=1e-14, maxiter=maxiter, M=Ms)
        assert np.linalg.norm(ours.x[:, j] - ref) <= 1e-10 * np.linalg.norm(ref)
    assert np.all(ours.iterations == maxiter) and not ours.converged.any()


def test_cg_converges_per_column_and_reports_it():
    A, B = spd_system(1)
    B[:, 1] = 0.0
    out = hk.cg(ssl.aslinearoperator(A), B, rtol=1e-10)
    assert out.converged.all() and out.iterations[1] == 0 and not out.x[:, 1].any()
    assert np.linalg.norm(A @ out.x - B) <= 1e-9 * np.linalg.norm(B)
    assert np.all(out.residual_norms <= 1e-10 * np.linalg.norm(B, axis=0) + 1e-300)
    single = hk.cg(lambda V: A @ V, B[:, 0], rtol=1e-10)
    assert single.x.shape == (B.shape[0],) and np.allclose(single.x, out.x[:, 0], rtol=1e-8)


def test_cg_warm_start_and_negative_curvature():
    A, B = spd_system(2)
    exact = np.linalg.solve(A, B)
    warm = hk.cg(lambda V: A @ V, B, x0=exact, rtol=1e-8)
    assert warm.converged.all() and np.all(warm.iterations == 0)
    out = hk.cg(lambda V: -A @ V, B[:, 0])
    assert not out.converged[0] and out.iterations[0] == 1


def test_cg_rejects_bad_right_hand_sides_and_starts():
    A, B = spd_system(3)
    N = A.shape[0]
    op = ssl.aslinearoperator(A)
    for bad, exc, match in [(np.full(N, np.nan), ValueError, "B contains NaN"),
                            (np.full((N, 2), np.inf), ValueError, "B contains NaN"),
                            (B.astype(complex), TypeError, "B must be a real"),
                            (np.ones((N, 1, 1)), ValueError, "B must be 1-D or 2-D"),
                            (np.ones(N + 1), ValueError, rf"B must have shape \({N},\)"),
                            (np.zeros(0), ValueError, rf"B must have shape \({N},\)")]:
        with pytest.raises(exc, match=match):
            hk.cg(op, bad)
    for x0, exc, match in [(np.ones(N + 1), ValueError, "x0 must have the shape of B"),
                           (np.ones(N), ValueError, "x0 must have the shape of B"),
                           (np.full(B.shape, np.nan), ValueError, "x0 contains NaN")]:
        with pytest.raises(exc, match=match):
            hk.cg(lambda V: A @ V, B, x0=x0)
    with pytest.raises(ValueError, match="A must map an"):
        hk.cg(lambda V: np.ones(3), B)
    x0, B0 = np.ones(B.shape), B.copy()
    hk.cg(lambda V: A @ V, B, x0=x0)
    assert np.array_equal(x0, np.ones(B.shape)) and np.array_equal(B, B0)


@pytest.mark.parametrize("where", ["A", "M"])
def test_cg_raises_when_a_product_is_not_finite(where):
    A, B = spd_system(4)
    good, bad = (lambda V: A @ V), (lambda V: np.full(V.shape, np.nan))
    with pytest.raises(FloatingPointError, match=f"{where} returned NaN"):
        hk.cg(bad if where == "A" else good, B, M=bad if where == "M" else None)


def test_inverse_operator_solves_the_damped_system(backend):
    case = CASES[9]
    theta, X, Y = case.data()
    c = case.net(backend).linearize(theta, X, Y)
    N = c.num_params
    B = np.random.default_rng(3).standard_normal((N, 3))
    inv = hk.inverse_operator(c, "gnh", damping=0.1, rtol=1e-12)
    ref = np.linalg.solve(c.gnh() + 0.1 * np.eye(N), B)
    assert np.linalg.norm(inv @ B - ref) <= 1e-9 * np.linalg.norm(ref)
    assert np.allclose(inv.matvec(B[:, 0]), ref[:, 0], rtol=1e-8)
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        hk.inverse_operator(c, "gnh", damping=0.1, maxiter=1) @ B


def test_inverse_operator_checks_its_arguments_when_made():
    case = CASES[9]
    c = case.net().linearize(*case.data())
    with pytest.raises(TypeError, match="maxiter"):
        hk.inverse_operator(c, maxiter=1.5)
    with pytest.raises(ValueError, match="maxiter"):
        hk.inverse_operator(c, maxiter=-1)
    with pytest.raises(TypeError, match="M must be"):
        hk.inverse_operator(c, M=3)
    with pytest.raises(np.linalg.LinAlgError, match="did not converge") as err:
        hk.inverse_operator(c, "gnh", damping=0.1, maxiter=1) @ np.ones(c.num_params)
    assert "kind='gnh'" not in str(err.value)  # no advice to use the kind already in use


@pytest.mark.parametrize("case", CASES[:3], ids=CASE_IDS[:3])
def test_hessian_inverse_where_positive_definite(case):
    theta, X, Y = case.data()
    c = case.net().linearize(theta, X, Y)
    H = c.hessian()
    shift = max(0.0, -np.linalg.eigvalsh(H)[0]) + 0.5
    b = np.arange(c.num_params, dtype=float)
    x = hk.inverse_operator(c, "hessian", damping=shift, rtol=1e-12) @ b
    assert np.allclose(x, np.linalg.solve(H + shift * np.eye(c.num_params), b), rtol=1e-8, atol=1e-10)


def test_operator_refuses_complex_vectors_and_a_damping_past_its_dtype():
    theta, X, Y = CASES[0].data()
    f32 = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    c = CASES[0].net().linearize(f32(theta), f32(X), f32(Y))
    op = c.linear_operator("gnh")
    with pytest.raises(TypeError, match="real vectors"):
        op.matvec(1j * np.ones(c.num_params))
    with pytest.raises(ValueError, match="damping must fit the snapshot's dtype float32"):
        c.linear_operator("gnh", damping=1e39)
    assert np.all(np.isfinite(c.linear_operator("gnh", damping=1e30).matvec(np.ones(c.num_params))))
