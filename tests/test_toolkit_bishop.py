"""Bishop's approximations (pyhessk.bishop): Becker–LeCun, outer product, Sherman–Morrison, check_hessian."""

import numpy as np
import pytest
import oracles
from cases import CASE_IDS, CASES, SMOOTH_CASES, Case

import pyhessk as hk

ONE_LAYER = [Case((2, 3), loss="softmax_cross_entropy", seed=10), Case((4, 3), loss="mse", seed=1, n=6),
             Case((3, 2), loss="sigmoid_cross_entropy", l2=0.2, seed=2), Case((3, 3), loss="mse", reduction="sum",
                                                                              bias=False, seed=3)]


def loss_gradient(case, F, Y):
    """∂ℓ/∂f per sample (n, d) in closed form."""
    T = oracles.targets(case, Y, F.shape[0])
    name = hk.MLP([1, 1], loss=case.loss).loss_name
    if name == "mse":
        return F - T
    if name == "softmax_cross_entropy":
        P = np.exp(F - F.max(axis=1, keepdims=True))
        return P / P.sum(axis=1, keepdims=True) - T
    return 1.0 / (1.0 + np.exp(-F)) - T


def becker_lecun_oracle(case, theta, X, Y, kind):
    """PRML 5.79–5.81 sample by sample, on the independent forward pass of tests/oracles.py; φ′ and φ″ by
    central differences of φ."""
    layers = oracles.unpack(case, theta)
    acts = oracles.activations(case)
    F = oracles.outputs(case, theta, X)
    Hout = oracles.output_hessians(case, F)
    E = loss_gradient(case, F, Y)
    s = oracles.scale(case, F.shape[0])
    out = [(np.zeros_like(W), None if b is None else np.zeros_like(b)) for W, b in layers]
    for k in range(X.shape[0]):
        a, zs, As = np.asarray(X[k], dtype=float), [], []
        for l, (W, b) in enumerate(layers):
            As.append(a)
            z = W @ a + (0 if b is None else b)
            zs.append(z)
            a = oracles.ACT[acts[l]](z) if l < len(acts) else z
        q, delta = s * np.diag(Hout[k]), s * E[k]
        for l in range(len(layers) - 1, -1, -1):
            dW, db = out[l]
            dW += np.outer(q, As[l] ** 2)
            if db is not None:
                db += q
            if l == 0:
                break
            W, z, phi = layers[l][0], zs[l - 1], oracles.ACT[acts[l - 1]]
            h = 1e-4
            d1 = (phi(z + h) - phi(z - h)) / (2 * h)
            d2 = (phi(z + h) - 2 * phi(z) + phi(z - h)) / h**2
            g = W.T @ delta
            q = d1**2 * ((W**2).T @ q) + (d2 * g if kind == "hessian" else 0.0)
            delta = d1 * g
    flat = np.concatenate([np.concatenate([dW.ravel()] + ([] if db is None else [db])) for dW, db in out])
    return flat + case.l2 * oracles.weight_mask(case)


@pytest.mark.parametrize("case", ONE_LAYER, ids=[c.id for c in ONE_LAYER])
def test_becker_lecun_is_exact_for_one_layer(case, backend):
    theta, X, Y = case.data()
    net = case.net(backend)
    c = net.linearize(theta, X, Y)
    for kind in ("hessian", "gnh"):
        bl = hk.diagonal(c, kind, "becker_lecun", data=(theta, X, Y))
        assert np.abs(bl - np.diag(c.hessian())).max() <= 1e-12 * np.abs(np.diag(c.hessian())).max()


@pytest.mark.parametrize("case", SMOOTH_CASES + [CASES[6]], ids=[c.id for c in SMOOTH_CASES + [CASES[6]]])
@pytest.mark.parametrize("kind", ["hessian", "gnh"])
def test_becker_lecun_matches_the_per_sample_recursion(case, kind):
    theta, X, Y = case.data()
    bl = hk.becker_lecun_diagonal(case.net(), theta, X, Y, kind=kind)
    ref = becker_lecun_oracle(case, theta, X, Y, kind)
    assert np.abs(bl - ref).max() <= 1e-6 * max(1.0, np.abs(ref).max())


def test_becker_lecun_is_a_biased_approximation_for_deep_nets():
    case = CASES[9]  # three hidden layers, softmax: H_out is not diagonal
    theta, X, Y = case.data()
    c = case.net().linearize(theta, X, Y)
    bl = hk.diagonal(c, "hessian", "becker_lecun", data=(theta, X, Y))
    exact = np.diag(c.hessian())
    assert np.abs(bl - exact).max() > 1e-3 * np.abs(exact).max()
    relu = CASES[6]  # φ″ = 0: the Hessian and Gauss–Newton versions coincide
    t, Xr, Yr = relu.data()
    assert np.array_equal(hk.becker_lecun_diagonal(relu.net(), t, Xr, Yr, "hessian"),
                          hk.becker_lecun_diagonal(relu.net(), t, Xr, Yr, "gnh"))
    assert not np.allclose(hk.becker_lecun_diagonal(case.net(), theta, X, Y, "hessian"),
                           hk.becker_lecun_diagonal(case.net(), theta, X, Y, "gnh"))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_outer_product_is_the_gauss_newton_matrix(case, backend):
    theta, X, Y = case.data()
    net = case.net(backend)
    G = net.linearize(theta, X, Y).gnh()
    op = hk.outer_product(net, theta, X, Y)
    assert np.abs(op - G).max() <= 1e-12 * max(1.0, np.abs(G).max())
    B = hk.outer_product_vectors(net, theta, X, Y, chunk_size=5)
    assert B.shape == (X.shape[0] * case.sizes[-1], net.num_params)


def test_outer_product_vectors_are_output_gradients_for_mse():
    case = Case((3, 4, 2), "tanh", "mse", reduction="sum", seed=4)  # PRML 5.84: b = ∇_θ f per output
    theta, X, Y = case.data()
    B = hk.outer_product_vectors(case.net(), theta, X, Y)
    J = oracles.jacobians(case, theta, X)  # (n, d, N) by finite differences
    assert np.abs(B - J.reshape(-1, J.shape[-1])).max() <= 1e-7


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 10.0])
def test_sherman_morrison_equals_the_inverse(alpha):
    case = CASES[3]
    theta, X, Y = case.data()
    B = hk.outer_product_vectors(case.net(), theta, X, Y)
    ref = np.linalg.inv(alpha * np.eye(B.shape[1]) + B.T @ B)
    inv = hk.sherman_morrison(B, alpha)
    assert np.abs(inv - ref).max() <= 1e-9 * np.abs(ref).max()
    assert np.array_equal(inv, inv.T)
    b = np.random.default_rng(0).standard_normal(7)
    assert np.allclose(hk.sherman_morrison(b, alpha), np.linalg.inv(alpha * np.eye(7) + np.outer(b, b)))
    with pytest.raises(ValueError, match="alpha"):
        hk.sherman_morrison(B, 0.0)


def test_sherman_morrison_checks_b_and_reports_overflow():
    for bad, exc, match in [(np.full((2, 3), np.nan), ValueError, "B contains NaN"),
                            (np.full(3, np.inf), ValueError, "B contains NaN"),
                            (np.ones((2, 3), dtype=complex), TypeError, "B must be a real"),
                            (np.ones((2, 3, 1)), ValueError, "B must be 1-D or 2-D"),
                            (np.float64(2.0), ValueError, "B must be 1-D or 2-D")]:
        with pytest.raises(exc, match=match):
            hk.sherman_morrison(bad, 1.0)
    B = np.ones((2, 3))
    for B_, alpha in [(B, 1e-300), (1e200 * B, 1.0)]:
        with pytest.raises(FloatingPointError, match="alpha"):
            hk.sherman_morrison(B_, alpha)


@pytest.mark.parametrize("case", [Case((3, 2), "identity", "mse", seed=1, n=8),
                                  Case((4, 3), "identity", "mse", l2=0.3, reduction="sum", seed=2, n=6),
                                  Case((3, 1), "identity", "mse", bias=False, seed=3)], ids=lambda c: c.id)
def test_check_hessian_on_a_quadratic(case):
    theta, X, Y = case.data()
    err = hk.check_hessian(case.net(), theta, X, Y, directions=6)
    assert err < 1e-9


@pytest.mark.parametrize("case", SMOOTH_CASES[:4], ids=[c.id for c in SMOOTH_CASES[:4]])
def test_check_hessian_on_smooth_nets_and_float32(case):
    theta, X, Y = case.data()
    assert hk.check_hessian(case.net(), theta, X, Y) < 1e-6
    t32, X32, Y32 = case.data("float32")
    assert hk.check_hessian(case.net(), t32, X32, Y32) < 1e-3  # float32 products, float64 differences


def test_check_hessian_detects_a_wrong_product(monkeypatch):
    case = CASES[0]
    theta, X, Y = case.data()
    original = hk.Curvature.hvp
    monkeypatch.setattr(hk.Curvature, "hvp", lambda self, V: 1.01 * original(self, V))
    assert 0.005 < hk.check_hessian(case.net(), theta, X, Y) < 0.02


@pytest.mark.parametrize("case", CASES[:6], ids=CASE_IDS[:6])
def test_empirical_fisher_diagonal_from_per_sample_gradients(case):
    theta, X, Y = case.data()
    net = case.net()
    single = hk.MLP(case.sizes, activation=net.activations, loss=case.loss, reduction="sum", bias=case.bias,
                    backend="numpy")
    Ys = np.asarray(Y)
    grads = np.stack([single.grad(theta, X[i:i + 1], Ys[i:i + 1]) for i in range(X.shape[0])])
    ref = oracles.scale(case, X.shape[0]) * (grads**2).sum(axis=0) + case.l2 * oracles.weight_mask(case)
    assert np.allclose(hk.empirical_fisher_diagonal(net, theta, X, Y), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fn", [hk.becker_lecun_diagonal, hk.bishop.empirical_fisher_diagonal, hk.outer_product,
                                hk.outer_product_vectors, hk.check_hessian])
def test_a_net_that_is_not_an_mlp_is_named(fn):
    theta, X, Y = CASES[0].data()
    with pytest.raises(TypeError, match="net must be a pyhessk.MLP, got NoneType"):
        fn(None, theta, X, Y)
