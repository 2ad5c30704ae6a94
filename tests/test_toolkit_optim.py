"""Optimizers (pyhessk.optim): Hessian-free, Levenberg–Marquardt and the scipy.optimize bridge."""

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg as ssl
from cases import CASES, Case

import pyhessk as hk
import pyhessk.optim.hessian_free as hf_module
from pyhessk.optim.hessian_free import martens_cg, minibatch_product


def linear_least_squares(seed=0, n=40, n0=5, d=2, bias=True):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n0))
    Y = X @ rng.standard_normal((n0, d)) + 0.3 * rng.standard_normal((n, d))
    net = hk.MLP([n0, d], loss="mse", bias=bias, backend="numpy")
    Xb = np.hstack([X, np.ones((n, 1))]) if bias else X
    coef = np.linalg.lstsq(Xb, Y, rcond=None)[0]  # (n0 [+1], d)
    exact = net.flatten([coef[:n0].T], [coef[n0]] if bias else [])
    return net, X, Y, exact


# ---- Hessian-free -----------------------------------------------------------------------------------
@pytest.mark.parametrize("preconditioner", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_hessian_free_solves_linear_least_squares_in_one_step(preconditioner, bias, backend):
    net, X, Y, exact = linear_least_squares(bias=bias)
    net = hk.MLP(net.sizes, loss="mse", bias=bias, backend=backend)
    opt = hk.optim.HessianFree(net, damping=0.0, preconditioner=preconditioner)
    theta = opt.step(net.init(seed=1), X, Y)
    assert np.abs(theta - exact).max() <= 1e-9 * np.abs(exact).max()
    h = opt.history[-1]
    assert h["alpha"] == 1.0 and h["cg_stop"] == "residual" and abs(h["rho"] - 1.0) < 1e-8


@pytest.mark.parametrize("backtrack", [1e300, 1e200, 300.0])
def test_hessian_free_takes_any_backtracking_spacing(backtrack):
    net, X, Y, exact = linear_least_squares(seed=4)
    opt = hk.optim.HessianFree(net, damping=0.0, backtrack=backtrack, preconditioner=False)
    theta = opt.step(net.init(seed=0), X, Y)
    assert opt.history[-1]["backtracked_to"] == opt.history[-1]["cg_iterations"]  # only the last iterate is kept
    assert np.abs(theta - exact).max() <= 1e-8 * np.abs(exact).max()


@pytest.mark.parametrize("make", [lambda net: hk.optim.HessianFree(net, damping=0.0),
                                  lambda net: hk.optim.LevenbergMarquardt(net, mu=1e-13)], ids=["hf", "lm"])
@pytest.mark.parametrize("as_given", [lambda t: np.zeros(t.shape, dtype=np.int64), lambda t: [0] * t.size],
                         ids=["int-array", "int-list"])
def test_integer_parameters_step_in_float64(make, as_given):
    net, X, Y, exact = linear_least_squares(seed=5)
    theta = as_given(np.zeros(net.num_params))
    new = make(net).step(theta, X, Y)
    assert new.dtype == np.float64
    assert np.abs(new - exact).max() <= 1e-8 * np.abs(exact).max()


@pytest.mark.parametrize("cls", [hk.optim.HessianFree, hk.optim.LevenbergMarquardt])
def test_optimizers_name_a_net_that_is_not_an_mlp(cls):
    with pytest.raises(TypeError, match="net must be a pyhessk.MLP, got NoneType"):
        cls(None)


def test_martens_cg_follows_cg_and_keeps_the_backtracking_iterates():
    rng = np.random.default_rng(0)
    N = 60
    Q = np.linalg.qr(rng.standard_normal((N, N)))[0]
    A = Q @ np.diag(np.geomspace(0.5, 5.0, N)) @ Q.T
    b = rng.standard_normal(N)
    run = martens_cg(lambda v: A @ v, b, max_iter=8, eps=0.0, tol=0.0)
    ref, _ = ssl.cg(A, b, rtol=1e-30, maxiter=8)
    assert run.iterations == 8 and run.reason == "max_iter"
    assert np.linalg.norm(run.x - ref) <= 1e-12 * np.linalg.norm(ref)
    assert [i for i, _, _ in run.stored] == [2, 3, 4, 5, 7, 8]  # ⌈1.3^j⌉ up to 8, then the last iterate
    for i, x, phi in run.stored:
        assert np.isclose(phi, 0.5 * x @ A @ x - b @ x, rtol=1e-12)
        assert np.linalg.norm(x - ssl.cg(A, b, rtol=1e-30, maxiter=i)[0]) <= 1e-12 * np.linalg.norm(x)


def test_martens_cg_relative_progress_stop():
    rng = np.random.default_rng(1)
    N = 400
    A = np.diag(np.geomspace(1e-4, 1.0, N))  # slow convergence: only the progress rule stops it early
    b = rng.standard_normal(N)
    run = martens_cg(lambda v: A @ v, b, max_iter=400, eps=5e-4, tol=0.0)
    assert run.reason == "progress" and 10 < run.iterations < 400
    i = run.iterations
    k = max(10, int(0.1 * i))
    phi = lambda x: 0.5 * x @ A @ x - b @ x  # noqa: E731
    prev = ssl.cg(A, b, rtol=1e-30, maxiter=i - k)[0]
    assert (phi(run.x) - phi(prev)) / phi(run.x) < k * 5e-4
    before = ssl.cg(A, b, rtol=1e-30, maxiter=i - 1)[0]  # one iteration earlier the rule had not fired
    k1 = max(10, int(0.1 * (i - 1)))
    assert (phi(before) - phi(ssl.cg(A, b, rtol=1e-30, maxiter=i - 1 - k1)[0])) / phi(before) >= k1 * 5e-4


def test_hessian_free_damping_rule_and_warm_start():
    case = Case((4, 6, 3), "tanh", "softmax_cross_entropy", n=30, seed=5)
    theta, X, Y = case.data()
    net = case.net()
    opt = hk.optim.HessianFree(net, damping=1.0, cg_max_iter=5)
    for _ in range(6):
        theta = opt.step(theta, X, Y)
    for h, nxt in zip(opt.history, opt.history[1:] + [{"damping": opt.damping}]):
        expected = h["damping"] * (1.5 if h["rho"] < 0.25 else 2 / 3 if h["rho"] > 0.75 else 1.0)
        assert np.isclose(nxt["damping"], expected)
        assert h["new_loss"] <= h["loss"]
    assert any(h["rho"] > 0.75 for h in opt.history)
    frozen = hk.optim.HessianFree(net, damping=0.5, adapt_damping=False)
    frozen.step(theta, X, Y)
    assert frozen.damping == 0.5


def test_hessian_free_warm_start(monkeypatch):
    case = Case((4, 6, 3), "tanh", "softmax_cross_entropy", n=30, seed=5)
    theta, X, Y = case.data()
    calls = []
    original = hf_module.martens_cg

    def spy(mul, b, x0=None, *args):
        calls.append(None if x0 is None else x0.copy())
        run = original(mul, b, x0, *args)
        calls.append(run.x.copy())
        return run

    monkeypatch.setattr(hf_module, "martens_cg", spy)
    opt = hk.optim.HessianFree(case.net(), warm_start=0.9)
    opt.step(opt.step(theta, X, Y), X, Y)
    assert calls[0] is None and np.allclose(calls[2], 0.9 * calls[1])  # ζ × the previous final CG iterate


def test_hessian_free_backtracks_and_line_searches():
    case = Case((3, 8, 2), "tanh", "mse", n=25, seed=6)
    theta, X, Y = case.data()
    theta = 3.0 * theta  # a strongly nonlinear start: full CG steps overshoot
    net = case.net()
    opt = hk.optim.HessianFree(net, damping=1e-4, adapt_damping=False, preconditioner=False)
    losses = [net.loss(theta, X, Y)]
    for _ in range(5):
        theta = opt.step(theta, X, Y)
        losses.append(net.loss(theta, X, Y))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert any(h["backtracked_to"] < h["cg_iterations"] or h["alpha"] < 1 for h in opt.history)
    for h in opt.history:  # Armijo's condition held for every accepted step
        assert h["alpha"] == 0 or h["new_loss"] <= h["loss"]


def test_hessian_free_trains_with_a_curvature_minibatch():
    case = Case((5, 10, 3), "tanh", "softmax_cross_entropy", n=200, seed=7)
    theta, X, _ = case.data()
    Y = np.argmax(X @ np.random.default_rng(0).standard_normal((5, 3)), axis=1)  # learnable labels
    net = case.net()
    opt = hk.optim.HessianFree(net, curvature_batch=50, seed=0)
    start = net.loss(theta, X, Y)
    for _ in range(10):
        theta = opt.step(theta, X, Y)
    assert net.loss(theta, X, Y) < 0.5 * start
    twin = hk.optim.HessianFree(net, curvature_batch=50, seed=0)
    again = case.data()[0]
    for _ in range(10):
        again = twin.step(again, X, Y)
    assert np.array_equal(theta, again)


def linear_jacobian(net, X):
    """J (n·d, N) of a one-layer network f = W x + b, in closed form: row (k, o) holds x_k at W[o, :], 1 at b[o]."""
    n, (n0, d) = X.shape[0], net.sizes
    J = np.zeros((n, d, net.num_params))
    for o in range(d):
        W, b = np.zeros((n, d, n0)), np.zeros((n, d))
        W[:, o, :], b[:, o] = X, 1.0
        J[:, o, :] = [net.flatten([W[k]], [b[k]]) for k in range(n)]
    return J.reshape(n * d, -1)


@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_hessian_free_minibatch_curvature_is_at_the_batch_scale(reduction, l2, monkeypatch):
    # The damped product CG uses equals s(n)·(n/m)·J_mᵀJ_m + λP_W + δI (mse: H_out = I), J_m the mini-batch's
    # Jacobian in closed form: a sum over m samples stands for one over n.
    n, m, damping = 60, 15, 0.7
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((n, 4)), rng.standard_normal((n, 2))
    net = hk.MLP([4, 2], loss="mse", l2=l2, reduction=reduction, backend="numpy")
    batches, muls = [], []
    linearize, cg_run = hk.MLP.linearize, hf_module.martens_cg
    monkeypatch.setattr(hk.MLP, "linearize", lambda self, t, X, Y: batches.append(X) or linearize(self, t, X, Y))
    monkeypatch.setattr(hf_module, "martens_cg", lambda mul, *a: muls.append(mul) or cg_run(mul, *a))
    hk.optim.HessianFree(net, damping=damping, curvature_batch=m, preconditioner=False).step(net.init(seed=0), X, Y)
    assert len(batches) == 2 and batches[1].shape == (m, 4)
    Jm = linear_jacobian(net, batches[1])
    s = 1.0 / n if reduction == "mean" else 1.0
    expected = s * (n / m) * Jm.T @ Jm + np.diag(l2 * net.spec.weight_mask()) + damping * np.eye(net.num_params)
    got = np.column_stack([muls[0](e) for e in np.eye(net.num_params)])
    assert np.allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    c = net.linearize(net.init(seed=0), X[:m], Y[:m])
    direct = np.column_stack([minibatch_product(c, n, damping)(e) for e in np.eye(net.num_params)])
    assert np.allclose(direct, s * (n / m) * linear_jacobian(net, X[:m]).T @ linear_jacobian(net, X[:m])
                       + np.diag(l2 * net.spec.weight_mask()) + damping * np.eye(net.num_params), rtol=1e-12)
    with pytest.raises(ValueError, match=f"n must be at least {m}"):
        minibatch_product(c, m - 1)
    with pytest.raises(TypeError, match="c must be a pyhessk.Curvature"):
        minibatch_product(None, n)


def test_hessian_free_steps_do_not_depend_on_the_reduction():
    # E_sum = n·E_mean when λ and the damping are n times larger: the gradient, G, the preconditioner's
    # diagonal and the damping all scale by n, so every iterate, ρ and α are the same (Newton's step is
    # invariant under scaling the objective), also with a curvature mini-batch.
    n = 120
    case = Case((4, 7, 3), "tanh", "softmax_cross_entropy", l2=1e-3, n=n, seed=11)
    theta, X, Y = case.data()
    nets = {r: hk.MLP([4, 7, 3], activation="tanh", loss="softmax_cross_entropy", l2=case.l2 * (n if r == "sum" else 1),
                      reduction=r, backend="numpy") for r in ("mean", "sum")}
    opts = {r: hk.optim.HessianFree(nets[r], damping=0.5 * (n if r == "sum" else 1), curvature_batch=30, seed=1)
            for r in ("mean", "sum")}
    thetas = {r: theta for r in opts}
    for _ in range(4):
        thetas = {r: opts[r].step(thetas[r], X, Y) for r in opts}
        assert np.allclose(thetas["sum"], thetas["mean"], rtol=1e-8, atol=1e-10)
    for hm, hs in zip(opts["mean"].history, opts["sum"].history):
        assert np.isclose(hs["rho"], hm["rho"], rtol=1e-6) and hs["alpha"] == hm["alpha"]
        assert np.isclose(hs["damping"], n * hm["damping"], rtol=1e-12)
    assert opts["mean"].history[0]["rho"] > 0


def test_hessian_free_zero_gradient_is_a_zero_step_without_cg(monkeypatch):
    X = np.array([[1.0, 2.0], [-1.0, 0.0], [3.0, 1.0], [0.0, -2.0]])
    net = hk.MLP([2, 1], loss="mse", backend="numpy")
    theta = np.array([2.0, -1.0, 0.5])
    Y = X @ theta[:2, None] + theta[2]  # exact in floating point: residuals, gradient and loss are 0
    assert not np.any(net.grad(theta, X, Y))
    calls = []
    monkeypatch.setattr(hf_module, "martens_cg", lambda *a: calls.append("cg"))
    monkeypatch.setattr(hk.Curvature, "empirical_fisher_diagonal", lambda *a: calls.append("fisher"))
    opt = hk.optim.HessianFree(net, damping=1.0, curvature_batch=2)
    for _ in range(3):
        assert np.array_equal(opt.step(theta, X, Y), theta)
    assert calls == [] and opt.damping == 1.0
    h = opt.history[-1]
    assert np.isnan(h["rho"]) and h["cg_iterations"] == 0 and h["alpha"] == 0 and h["new_loss"] == h["loss"] == 0
    run = martens_cg(lambda v: calls.append("product") or v, np.zeros(3), x0=np.ones(3))
    assert calls == [] and not np.any(run.x) and run.reason == "residual" and run.iterations == 0
    assert [(i, phi) for i, _, phi in run.stored] == [(0, 0.0)] and not np.any(run.stored[0][1])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_hessian_free_keeps_the_damping_at_a_stationary_point(dtype):
    # At the least-squares solution ‖g‖ is rounding, and so are q(p) ≥ −‖g‖²/(2λ) and E(θ+p) − E(θ): ρ says
    # nothing, and λ must not drift (it grew by 3/2 per step).
    net, X, Y, exact = linear_least_squares(seed=6)
    X, Y, theta = X.astype(dtype), Y.astype(dtype), exact.astype(dtype)
    opt = hk.optim.HessianFree(net, damping=1.0)
    for _ in range(5):
        new = opt.step(theta, X, Y)
        assert np.abs(new - exact).max() <= 10 * np.finfo(dtype).eps * np.abs(exact).max()
    assert opt.damping == 1.0 and all(np.isnan(h["rho"]) for h in opt.history)
    X, Y, start = X.astype(np.float64), Y.astype(np.float64), exact + 0.1
    moved = opt.step(start, X, Y)  # away from it the rule is back
    assert opt.history[-1]["rho"] > 0.75 and opt.damping == 2 / 3 and net.loss(moved, X, Y) < net.loss(start, X, Y)


# ---- Levenberg–Marquardt ----------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["dense", "cg"])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5]], ids=lambda c: c.id)
def test_levenberg_marquardt_step_is_the_dense_solve(case, solver, backend):
    theta, X, Y = case.data()
    net = case.net(backend)
    c = net.linearize(theta, X, Y)
    opt = hk.optim.LevenbergMarquardt(net, mu=1e-2, solver=solver, cg_rtol=1e-13)
    new = opt.step(theta, X, Y)
    h = opt.history[-1]
    assert h["accepted"] and h["solver"] == solver
    ref = np.linalg.solve(c.gnh() + h["mu"] * np.eye(net.num_params), -c.grad)
    assert np.linalg.norm((new - theta) - ref) <= 1e-9 * np.linalg.norm(ref)
    assert np.isclose(opt.mu, h["mu"] * 0.1)


def test_levenberg_marquardt_mu_rule():
    case = Case((3, 6, 2), "tanh", "mse", n=20, seed=8)
    theta, X, Y = case.data()
    theta = 4.0 * theta
    net = case.net()
    opt = hk.optim.LevenbergMarquardt(net, mu=1e-8)  # too small: the first trials are rejected
    new = opt.step(theta, X, Y)
    h = opt.history[-1]
    assert h["trials"] > 1 and np.isclose(h["mu"], 1e-8 * 10 ** (h["trials"] - 1))
    assert h["accepted"] and net.loss(new, X, Y) < net.loss(theta, X, Y)
    assert h["trials"] >= 3
    stuck = hk.optim.LevenbergMarquardt(net, mu=1e-8, mu_max=1e-8 * 10 ** (h["trials"] - 2))
    assert np.array_equal(stuck.step(theta, X, Y), theta)  # every μ up to mu_max is rejected: no step
    assert not stuck.history[-1]["accepted"] and stuck.history[-1]["trials"] == h["trials"] - 1
    assert stuck.history[-1]["exhausted"] and not h["exhausted"]
    assert stuck.mu == stuck.mu_max  # the next step tries again, from the most damped step
    stuck.step(theta, X, Y)
    assert stuck.history[-1]["trials"] == 1 and stuck.history[-1]["mu"] == stuck.mu_max


def test_levenberg_marquardt_tries_again_after_giving_up():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 3)), rng.standard_normal((20, 1))
    net = hk.MLP([3, 4, 1], activation="tanh", loss="mse", backend="numpy")
    theta = net.init(seed=0)
    opt = hk.optim.LevenbergMarquardt(net, mu=1e-3, mu_max=5e-3, solver="dense")
    assert np.array_equal(opt.step(theta, X, Y), theta)  # μ = 1e-3 overshoots and 1e-2 is past mu_max
    assert opt.history[-1]["exhausted"] and opt.history[-1]["trials"] == 1 and opt.mu == 5e-3
    new = opt.step(theta, X, Y)  # from μ = mu_max, which decreases the objective here
    h = opt.history[-1]
    assert h["accepted"] and not h["exhausted"] and h["trials"] == 1 and h["mu"] == 5e-3
    c = net.linearize(theta, X, Y)
    ref = np.linalg.solve(c.gnh() + 5e-3 * np.eye(net.num_params), -c.grad)
    assert np.linalg.norm((new - theta) - ref) <= 1e-10 * np.linalg.norm(ref)
    assert net.loss(new, X, Y) < net.loss(theta, X, Y) and np.isclose(opt.mu, 5e-4)


def test_levenberg_marquardt_mu_stays_positive_and_below_mu_max():
    with pytest.raises(ValueError, match=r"mu must be <= mu_max \(0.5\), got 1.0"):
        hk.optim.LevenbergMarquardt(hk.MLP([3, 1], backend="numpy"), mu=1.0, mu_max=0.5)
    net, X, Y, exact = linear_least_squares(seed=3)
    opt = hk.optim.LevenbergMarquardt(net, mu=5e-324)  # μ·mu_dec rounds to 0, and 0·mu_inc stays 0
    theta = opt.step(net.init(seed=0), X, Y)
    assert opt.history[-1]["accepted"] and np.abs(theta - exact).max() <= 1e-9 * np.abs(exact).max()
    assert opt.mu == np.finfo(np.float64).tiny
    opt.mu = 1e20  # set past mu_max by hand: the step clamps it
    opt.step(theta + 1.0, X, Y)
    assert opt.history[-1]["trials"] == 1 and opt.history[-1]["mu"] == opt.mu_max


def test_levenberg_marquardt_reaches_the_least_squares_solution():
    net, X, Y, exact = linear_least_squares(seed=2)
    theta = hk.optim.LevenbergMarquardt(net, mu=1e-13, solver="auto").step(net.init(seed=0), X, Y)
    assert np.abs(theta - exact).max() <= 1e-9 * np.abs(exact).max()
    assert hk.optim.LevenbergMarquardt(net, max_dense_params=0).step(net.init(seed=0), X, Y) is not None
    with pytest.raises(ValueError, match="solver"):
        hk.optim.LevenbergMarquardt(net, solver="qr")


def test_levenberg_marquardt_cg_rejects_a_mu_whose_products_overflow():
    rng = np.random.default_rng(0)
    net = hk.MLP([3, 1], loss="mse", backend="numpy")
    X, Y = 100 * rng.standard_normal((10, 3)), rng.standard_normal((10, 1))
    theta = net.init(seed=0)
    opt = hk.optim.LevenbergMarquardt(net, mu=1e308, mu_max=1.5e308, solver="cg")  # μ·v overflows
    assert np.array_equal(opt.step(theta, X, Y), theta)
    assert not opt.history[-1]["accepted"] and opt.history[-1]["trials"] == 1


# ---- the scipy.optimize bridge ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["Newton-CG", "trust-ncg", "trust-krylov"])
def test_scipy_problem_minimizes(method):
    case = Case((3, 5, 2), "tanh", "softmax_cross_entropy", l2=0.05, n=30, seed=9)
    theta, X, Y = case.data()
    net = case.net()
    kind = "gnh" if method == "Newton-CG" else "hessian"
    options = {"xtol": 1e-12} if method == "Newton-CG" else {"gtol": 1e-7}  # trlib breaks down below ~1e-8
    res = scipy.optimize.minimize(**hk.scipy_problem(net, X, Y, kind=kind), x0=theta, method=method,
                                  options=options)
    assert np.linalg.norm(net.grad(res.x, X, Y)) < 1e-6
    assert res.fun < net.loss(theta, X, Y)


def test_scipy_problem_products_and_cache(monkeypatch):
    case = CASES[3]
    theta, X, Y = case.data()
    net = case.net()
    problem = hk.scipy_problem(net, X, Y)
    c = net.linearize(theta, X, Y)
    v = np.arange(net.num_params, dtype=float)
    calls = []
    original = hk.MLP.linearize
    monkeypatch.setattr(hk.MLP, "linearize", lambda self, *a: calls.append(1) or original(self, *a))
    assert problem["fun"](theta) == c.loss
    assert np.array_equal(problem["jac"](theta), c.grad)
    assert np.allclose(problem["hessp"](theta, v), c.hvp(v), rtol=1e-14)
    assert len(calls) == 1
    problem["fun"](theta + 1.0)
    assert len(calls) == 2
    assert np.allclose(hk.scipy_problem(net, X, Y, kind="gnh")["hessp"](theta, v), c.gnvp(v), rtol=1e-14)


def test_scipy_problem_keeps_the_two_latest_points(monkeypatch):
    case = CASES[3]
    theta, X, Y = case.data()
    net = case.net()
    problem = hk.scipy_problem(net, X, Y)
    seen = []
    original = hk.MLP.linearize
    monkeypatch.setattr(hk.MLP, "linearize", lambda self, t, *a: seen.append(t.copy()) or original(self, t, *a))
    a, b, c = theta, theta + 0.1, theta - 0.1
    v = np.ones(net.num_params)
    problem["fun"](a), problem["jac"](a)
    problem["fun"](b)  # a trial point, rejected: back to a
    problem["hessp"](a, v), problem["fun"](b), problem["jac"](a)
    problem["fun"](c)  # evicts b, the least recently used
    problem["jac"](a), problem["fun"](c), problem["fun"](b)
    assert [x.tolist() for x in seen] == [a.tolist(), b.tolist(), c.tolist(), b.tolist()]
    assert problem["fun"](b) == net.loss(b, X, Y) and np.array_equal(problem["jac"](c), net.grad(c, X, Y))


@pytest.mark.parametrize("method", ["trust-ncg", "trust-krylov", "trust-constr"])
def test_scipy_problem_linearizes_each_point_once(method, monkeypatch):
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((60, 4)), rng.standard_normal((60, 2))
    net = hk.MLP([4, 8, 2], activation="tanh", loss="mse", backend="numpy")
    problem = hk.scipy_problem(net, X, Y)
    seen = []
    original = hk.MLP.linearize
    monkeypatch.setattr(hk.MLP, "linearize", lambda self, t, *a: seen.append(t.tobytes()) or original(self, t, *a))
    res = scipy.optimize.minimize(**problem, x0=net.init(seed=0), method=method, options={"maxiter": 30})
    assert res.nfev > 10 and len(seen) == len(set(seen))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scipy_problem_is_a_snapshot_of_the_batch(dtype):
    case = Case((3, 4, 3), "tanh", "softmax_cross_entropy", n=20, seed=12)
    theta, X, Y = case.data()
    net = case.net()
    X = X.astype(dtype)
    ref = net.linearize(theta, X.astype(np.float64), Y.copy())
    problem = hk.scipy_problem(net, X, Y)
    v = np.linspace(-1.0, 1.0, net.num_params)
    X[:] = 0.0  # the caller refills its buffers in place
    Y[:] = 0
    for _ in range(2):  # from the cached snapshot, then after others have evicted it
        assert problem["fun"](theta) == ref.loss
        assert np.array_equal(problem["jac"](theta), ref.grad)
        assert np.allclose(problem["hessp"](theta, v), ref.hvp(v), rtol=1e-13)
        problem["fun"](theta + 1.0)
        problem["fun"](theta - 1.0)


def test_scipy_problem_checks_its_arguments_before_scipy_calls_it():
    net = hk.MLP([3, 1], loss="mse", backend="numpy")
    X, Y = np.ones((4, 3)), np.ones(4)
    with pytest.raises(TypeError, match="net must be a pyhessk.MLP"):
        hk.scipy_problem(None, X, Y)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        hk.scipy_problem(net, np.ones((4, 2)), Y)
    with pytest.raises(ValueError, match=r"Y must have shape \(4, 1\)"):
        hk.scipy_problem(net, X, np.ones(5))
    with pytest.raises(ValueError, match="kind"):
        hk.scipy_problem(net, X, Y, kind="fisher")
    X32 = np.ones((4, 3), dtype=np.float32)
    problem = hk.scipy_problem(net, X32, Y)
    assert X32.dtype == np.float32 and problem["jac"](net.init(seed=0)).dtype == np.float64
