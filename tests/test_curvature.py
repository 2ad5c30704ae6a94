"""Curvature products of every engine against oracles independent of the code under test."""

from __future__ import annotations

import cProfile
import pstats
from functools import cache

import numpy as np
import pytest

import pyhessk as hk
from cases import CASE_IDS, CASES, SMOOTH_CASES, Case
from oracles import (explicit_gnh, fd_gradient, fd_hessian, jacobians, kink_margin, objective, outputs,
                     per_sample_loss, rel_err, scale, weight_mask)

TOL = {np.dtype("float64"): 1e-7, np.dtype("float32"): 2e-4}


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request) -> Case:
    return request.param


@cache
def oracle(case: Case):
    """float64 data and the independent dense H (second differences) and G (Jᵀ H_out J)."""
    theta, X, Y = case.data("float64")
    if case not in SMOOTH_CASES:
        assert kink_margin(case, theta, X) > 2e-2, "choose a seed whose pre-activations stay away from kinks"
    return theta, X, Y, fd_hessian(case, theta, X, Y), explicit_gnh(case, theta, X, Y), jacobians(case, theta, X)


def setup(case: Case, backend: str, dtype):
    theta, X, Y, H, G, J = oracle(case)
    cast = lambda a: a.astype(dtype) if a.dtype.kind == "f" else a  # noqa: E731
    net = case.net(backend)
    th, x, y = cast(theta), cast(X), cast(Y)
    return net, th, x, y, net.linearize(th, x, y), H, G, J


def rand_block(N, k, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal((N, k)).astype(dtype)


def test_forward_loss_gradient(case, backend, dtype):
    net, th, x, y, c, *_ = setup(case, backend, dtype)
    t64, x64 = th.astype(np.float64), x.astype(np.float64)
    F = net.forward(th, x)
    assert F.dtype == dtype and F.shape == (case.n, case.sizes[-1])
    assert rel_err(F, outputs(case, t64, x64)) < TOL[dtype]
    ref = objective(case, t64, x64, y)
    assert abs(net.loss(th, x, y) - ref) <= TOL[dtype] * max(1.0, abs(ref))
    assert abs(c.loss - ref) <= TOL[dtype] * max(1.0, abs(ref))
    g_ref = fd_gradient(lambda t: objective(case, t, x64, y), t64)
    assert c.grad.dtype == dtype
    assert rel_err(c.grad, g_ref) < TOL[dtype]
    assert rel_err(net.grad(th, x, y), g_ref) < TOL[dtype]


def test_hessian_against_second_differences(case, backend, dtype):
    *_, c, H, _, _ = setup(case, backend, dtype)
    Hc = c.hessian()
    assert Hc.shape == H.shape and Hc.dtype == dtype
    assert rel_err(Hc, H) < max(TOL[dtype], 2e-6)
    V = rand_block(c.num_params, 3, dtype)
    assert rel_err(c.hvp(V), H @ V.astype(np.float64)) < max(TOL[dtype], 2e-6)


@pytest.mark.parametrize("case", SMOOTH_CASES, ids=[c.id for c in SMOOTH_CASES])
def test_hvp_against_differences_of_the_gradient(case, backend):
    """ALGORITHMS §8.5.2: H v against central differences of ∇L, to ~1e-9 in float64."""
    net, th, x, y, c, *_ = setup(case, backend, np.float64)
    v = rand_block(c.num_params, 1, np.float64, seed=3)[:, 0]
    h = 6e-6 * max(1.0, np.linalg.norm(th)) / np.linalg.norm(v)
    fd = (net.grad(th + h * v, x, y) - net.grad(th - h * v, x, y)) / (2 * h)
    assert rel_err(c.hvp(v), fd) < 1e-7


def test_gnh_against_explicit_jacobians(case, backend, dtype):
    *_, c, _, G, _ = setup(case, backend, dtype)
    Gc = c.gnh()
    assert rel_err(Gc, G) < TOL[dtype]
    V = rand_block(c.num_params, 4, dtype)
    assert rel_err(c.gnvp(V), G @ V.astype(np.float64)) < TOL[dtype]


def test_jvp_and_vjp_against_explicit_jacobians(case, backend, dtype):
    *_, c, _, _, J = setup(case, backend, dtype)
    N, (n, d) = c.num_params, J.shape[:2]
    V = rand_block(N, 3, dtype)
    JV = c.jvp(V)
    assert JV.shape == (n, d, 3) and JV.dtype == dtype
    assert rel_err(JV, np.einsum("kdp,pj->kdj", J, V.astype(np.float64))) < TOL[dtype]
    assert rel_err(c.jvp(V[:, 0]), J @ V[:, 0].astype(np.float64)) < TOL[dtype]
    U = np.random.default_rng(5).standard_normal((n, d, 2)).astype(dtype)
    JtU = c.vjp(U)
    assert JtU.shape == (N, 2)
    assert rel_err(JtU, np.einsum("kdp,kdj->pj", J, U.astype(np.float64))) < TOL[dtype]
    assert rel_err(c.vjp(U[:, :, 1]), np.einsum("kdp,kd->p", J, U[:, :, 1].astype(np.float64))) < TOL[dtype]


@cache
def per_sample_gradients(case: Case) -> np.ndarray:
    """∇ℓ_k of every sample by central differences of its own loss (no scale, no λ): (n, N)."""
    theta, X, Y, *_ = oracle(case)
    return np.stack([fd_gradient(lambda t, k=k: float(per_sample_loss(case, outputs(case, t, X[k:k + 1]), Y[k:k + 1])[0]),
                                 theta) for k in range(X.shape[0])])


def test_empirical_fisher_diagonal_against_per_sample_gradients(case, backend, dtype):
    net, th, x, y, c, *_ = setup(case, backend, dtype)
    ref = scale(case, case.n) * (per_sample_gradients(case) ** 2).sum(axis=0) + case.l2 * weight_mask(case)
    got = c.empirical_fisher_diagonal()
    assert got.dtype == dtype and got.shape == (c.num_params,)
    assert rel_err(got, ref) < TOL[dtype]
    assert got is not c.empirical_fisher_diagonal()  # a fresh array each time


def test_float32_bias_gradient_sums_the_batch_in_float64(backend):
    """README: sums over the batch of float32 data add up in float64. Residuals of one sign over 300,000
    samples: a float32 running sum is off by ~1e-5 relative, a float64 one by the final rounding (6e-8)."""
    rng = np.random.default_rng(0)
    n = 300_000
    X = rng.standard_normal((n, 3)).astype(np.float32)
    Y = (rng.standard_normal((n, 2)) + 3).astype(np.float32)
    net = hk.MLP([3, 4, 2], loss="mse", reduction="sum", backend=backend)
    th = net.init(seed=0, dtype="float32")
    g = net.linearize(th, X, Y).grad
    g64 = hk.MLP([3, 4, 2], loss="mse", reduction="sum", backend="numpy").grad(th.astype(np.float64),
                                                                              X.astype(np.float64), Y.astype(np.float64))
    for l in (1, 2):
        b, b64 = net.spec.layer_views(g, l)[1], net.spec.layer_views(g64, l)[1]
        assert np.abs(b - b64).max() <= 2e-7 * np.abs(b64).max(), l


def test_symmetry_and_linearity(case, backend):
    *_, c, _, _, _ = setup(case, backend, np.float64)
    V = rand_block(c.num_params, 2, np.float64, seed=7)
    v, w = V[:, 0], V[:, 1]
    for product in (c.hvp, c.gnvp):
        Hv, Hw = product(v), product(w)
        assert abs(v @ Hw - w @ Hv) <= 1e-12 * np.linalg.norm(v) * np.linalg.norm(Hw) + 1e-300
        assert rel_err(product(2.5 * v - 0.5 * w), 2.5 * Hv - 0.5 * Hw) < 1e-12


def test_block_equals_single_products(case, backend, dtype):
    *_, c, _, _, _ = setup(case, backend, dtype)
    V = rand_block(c.num_params, 5, dtype, seed=11)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for product in (c.hvp, c.gnvp, c.jvp):
        block = product(V)
        singles = np.stack([product(V[:, j]) for j in range(V.shape[1])], axis=-1)
        assert block.shape == singles.shape and rel_err(block, singles) < tol
    U = np.random.default_rng(2).standard_normal((case.n, case.sizes[-1], 4)).astype(dtype)
    assert rel_err(c.vjp(U), np.stack([c.vjp(U[:, :, j]) for j in range(4)], axis=-1)) < tol


def test_gnh_is_psd_and_differs_from_h(case, backend):
    *_, c, H, G, _ = setup(case, backend, np.float64)
    Gc = c.gnh()
    assert np.linalg.eigvalsh(Gc).min() >= -1e-12 * np.abs(Gc).max()
    nonlinear = len(case.sizes) > 2 and case.activation != "identity"
    if nonlinear:  # the oracle itself says H and G differ: a product that mixed them up would fail above
        assert rel_err(H, G) > 1e-3


def test_l2_adds_exactly_lambda_on_weights(backend, dtype):
    base = Case((3, 4, 2), "tanh", "softmax_cross_entropy", seed=21)
    reg = Case((3, 4, 2), "tanh", "softmax_cross_entropy", seed=21, l2=0.7)
    th, X, Y = base.data(dtype)
    V = rand_block(th.size, 3, dtype)
    c0, c1 = base.net(backend).linearize(th, X, Y), reg.net(backend).linearize(th, X, Y)
    shift = 0.7 * weight_mask(base)[:, None] * V
    tol = 1e-13 if dtype == np.float64 else 1e-5
    assert rel_err(c1.hvp(V) - c0.hvp(V), shift) < tol
    assert rel_err(c1.gnvp(V) - c0.gnvp(V), shift) < tol
    assert rel_err(c1.grad - c0.grad, 0.7 * weight_mask(base) * th) < tol


def test_reduction_sum_is_n_times_mean(backend, dtype):
    mean = Case((3, 5, 3), "gelu", "sigmoid_cross_entropy", n=6, seed=22)
    total = Case((3, 5, 3), "gelu", "sigmoid_cross_entropy", n=6, seed=22, reduction="sum")
    th, X, Y = mean.data(dtype)
    V = rand_block(th.size, 2, dtype)
    cm, cs = mean.net(backend).linearize(th, X, Y), total.net(backend).linearize(th, X, Y)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert abs(cs.loss - 6 * cm.loss) <= tol * abs(cs.loss)
    for a, b in ((cs.grad, cm.grad), (cs.hvp(V), cm.hvp(V)), (cs.gnvp(V), cm.gnvp(V))):
        assert rel_err(a, 6 * b) < tol


@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy", "sigmoid_cross_entropy"])
@pytest.mark.parametrize("bias", [True, False])
def test_gnh_equals_hessian_for_one_layer(backend, loss, bias):
    """A one-layer net is affine in θ, so H = G exactly (ALGORITHMS §3)."""
    case = Case((4, 3), "tanh", loss, bias=bias, l2=0.2, n=6, seed=23)
    c = case.net(backend).linearize(*case.data())
    assert rel_err(c.hessian(), c.gnh()) < 1e-13


def test_confident_softmax_keeps_its_output_hessian(backend, dtype):
    """Class 0 wins every sample by a margin past the dtype's precision, so p_0 rounds to 1: the output
    Hessian's (0, 0) entry p_0(1 − p_0) must come from 1 − p_0 = Σ_{j≠0} p_j, not from p_0 − p_0² (which is 0).
    The output-bias block of both G and H is s·Σ_k H_out,k; the oracle takes it from float64 logits in the
    log domain. Every route agrees: plain products, one vector and a block, the dense matrices, the factors."""
    net = hk.MLP([4, 5, 3], activation="tanh", loss="softmax_cross_entropy", backend=backend)
    rng = np.random.default_rng(24)
    theta = net.init(seed=24)
    Ws, bs = net.unflatten(theta)
    Ws[-1] *= 0.1
    bs[-1][:] = [20.0 if dtype == np.float32 else 40.0, 0.0, 0.0]
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    F = net.forward(theta, X)
    p = np.exp(F - (F.max(axis=1, keepdims=True) + np.log(np.exp(F - F.max(axis=1, keepdims=True)).sum(1, keepdims=True))))
    assert (1 - p[:, 0] < 0.5 * np.finfo(dtype).eps).all()  # p_0 rounds to 1 in the dtype
    H0 = np.einsum("ka,kb->ab", p, p) * -1 + np.diag(p.sum(0))  # Σ_k diag(p) − ppᵀ, off the diagonal
    H0[0, 0] = (p[:, 0] * p[:, 1:].sum(1)).sum()  # the (0, 0) entry without cancellation
    H0 /= len(X)
    b0 = net.num_params - 3  # the output biases are θ's last three entries
    c = net.linearize(theta.astype(dtype), X.astype(dtype), y)
    V = np.zeros((net.num_params, 3), dtype)
    V[b0:, :] = np.eye(3)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for got in (c.gnvp(V)[b0:], c.hvp(V)[b0:], c.gnh()[b0:, b0:], c.hessian()[b0:, b0:],
                np.stack([c.gnvp(V[:, j])[b0:] for j in range(3)], axis=1), c.gnh_entries().block(np.arange(b0, b0 + 3), np.arange(b0, b0 + 3))):
        assert rel_err(np.diag(got), np.diag(H0)) < tol
        assert rel_err(got, H0) < tol


@pytest.mark.parametrize("activation", ["tanh", "sin", "softplus"])
def test_gnh_equals_hessian_at_zero_residual(backend, activation):
    """With mse and y = f(x) every residual vanishes, so the extra Hessian terms drop out (ALGORITHMS §3)."""
    case = Case((3, 5, 4, 2), activation, "mse", n=6, seed=24)
    net = case.net(backend)
    th, X, _ = case.data()
    c = net.linearize(th, X, net.forward(th, X))
    H, G = c.hessian(), c.gnh()
    assert rel_err(H, G) < 1e-12
    assert rel_err(H, oracle_hessian_at(case, th, X)) < 2e-6


def oracle_hessian_at(case, th, X):
    return fd_hessian(case, th, X, outputs(case, th, X))


def test_gnvp_never_runs_the_gradient_pass(backend):
    case = CASES[3]
    th, X, Y = case.data()
    net = case.net(backend)
    c = net._linearize_forward(th, X, Y)
    G = c.gnvp(np.eye(th.size)[:, :3])
    assert c._lin.grad is None  # the backward pass of the gradient never ran
    assert rel_err(G, oracle(case)[4][:, :3]) < 1e-7
    assert rel_err(hk.gnvp(net, th, X, Y, np.eye(th.size)[:, :3]), G) < 1e-14


def test_hvp_on_a_forward_only_snapshot_then_the_gradient(backend):
    """hk.hvp's route: the product runs the backward pass it needs; the gradient asked for afterwards is
    still the full, correct one (the C++ engine adds the weight-gradient GEMMs only then)."""
    case = Case((4, 5, 5, 3), "softplus", "softmax_cross_entropy", n=7, seed=26, l2=0.2)
    th, X, Y = case.data()
    net = case.net(backend)
    c = net._linearize_forward(th, X, Y)
    V = rand_block(th.size, 2, np.float64)
    assert rel_err(c.hvp(V), net.linearize(th, X, Y).hvp(V)) < 1e-14
    assert rel_err(c.grad, net.grad(th, X, Y)) < 1e-14
    assert rel_err(c.grad, fd_gradient(lambda t: objective(case, t, X, Y), th)) < 1e-7


def _calls(fn) -> int:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    return sum(stat[1] for stat in pstats.Stats(prof).stats.values())


@pytest.mark.parametrize("product", ["hvp", "gnvp", "jvp"])
def test_block_products_do_not_loop_over_columns(backend, product):
    """k vectors go through the same GEMMs: the Python-level work of a product does not grow with k."""
    case = Case((5, 6, 6, 3), "tanh", "softmax_cross_entropy", n=8, seed=25)
    c = case.net(backend).linearize(*case.data())
    fn = getattr(c, product)
    one, many = rand_block(c.num_params, 1, np.float64), rand_block(c.num_params, 40, np.float64)
    fn(one), fn(many)
    assert _calls(lambda: fn(one)) == _calls(lambda: fn(many))


def test_one_shot_helpers_match_the_snapshot(backend):
    case = CASES[1]
    th, X, Y = case.data()
    net = case.net(backend)
    c = net.linearize(th, X, Y)
    V = rand_block(th.size, 2, np.float64)
    assert rel_err(hk.hvp(net, th, X, Y, V), c.hvp(V)) < 1e-14
    assert rel_err(hk.gnvp(net, th, X, Y, V[:, 0]), c.gnvp(V[:, 0])) < 1e-14
