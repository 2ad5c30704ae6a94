"""pyhessk.functional against the independent float64 oracle (tests/oracles.py: its own forward pass, central
finite differences, closed-form output Hessians), in both vector forms, both dtypes, and its error cases."""

from __future__ import annotations

import numpy as np
import pytest

from cases import Case
from oracles import explicit_gnh, fd_gradient, fd_hessian, jacobians, objective, outputs, rel_err, unpack

from pyhessk import functional as F

FCASES = [
    Case((3, 4, 3), "tanh", "mse", seed=0),
    Case((4, 5, 3), "sigmoid", "softmax_cross_entropy", l2=0.1, seed=1),
    Case((3, 4, 3, 2), ("gelu", "softplus"), "sigmoid_cross_entropy", reduction="sum", seed=2),
    Case((3, 4, 2), "silu", "mse", bias=False, seed=3),
]
IDS = [c.id for c in FCASES]


def layers(case, theta, dtype="float64"):
    pairs = unpack(case, theta)
    Ws = [W.astype(dtype) for W, _ in pairs]
    bs = [b.astype(dtype) for _, b in pairs] if case.bias else None
    return Ws, bs


def opts(case):
    act = case.activation if isinstance(case.activation, str) else list(case.activation)
    return dict(activation=act, loss=case.loss, l2=case.l2, reduction=case.reduction)


@pytest.mark.parametrize("case", FCASES, ids=IDS)
def test_products_match_the_oracle_float64(case, backend):
    theta, X, Y = case.data()
    Ws, bs = layers(case, theta)
    o = dict(opts(case), backend=backend)
    N = theta.size
    H = fd_hessian(case, theta, X, Y)
    G = explicit_gnh(case, theta, X, Y)
    J = jacobians(case, theta, X)  # (n, d, N)
    V = np.random.default_rng(0).standard_normal((N, 3))

    loss, g = F.loss_and_grad(Ws, bs, X, Y, **o)
    assert abs(loss - objective(case, theta, X, Y)) < 1e-12 * max(1.0, abs(loss))
    assert rel_err(g, fd_gradient(lambda t: objective(case, t, X, Y), theta)) < 1e-7
    assert rel_err(F.hvp(Ws, bs, X, Y, V, **o), H @ V) < 1e-6
    assert rel_err(F.hvp(Ws, bs, X, Y, V[:, 0], **o), H @ V[:, 0]) < 1e-6
    assert rel_err(F.gnvp(Ws, bs, X, Y, V, **o), G @ V) < 1e-7
    assert rel_err(F.gnh_diagonal(Ws, bs, X, Y, **o), np.diag(G)) < 1e-7
    assert rel_err(F.hessian(Ws, bs, X, Y, **o), H) < 1e-6
    assert rel_err(F.gnh(Ws, bs, X, Y, **o), G) < 1e-7
    act = o["activation"]
    assert rel_err(F.forward(Ws, bs, X, activation=act, backend=backend), outputs(case, theta, X)) < 1e-13
    assert rel_err(F.jvp(Ws, bs, X, V, activation=act, backend=backend), np.einsum("kdp,pj->kdj", J, V)) < 1e-7
    U = np.random.default_rng(1).standard_normal((X.shape[0], case.sizes[-1]))
    assert rel_err(F.vjp(Ws, bs, X, U, activation=act, backend=backend), np.einsum("kdp,kd->p", J, U)) < 1e-7


@pytest.mark.parametrize("case", FCASES, ids=IDS)
def test_per_layer_vectors_round_trip(case):
    theta, X, Y = case.data()
    Ws, bs = layers(case, theta)
    o = opts(case)
    V = np.random.default_rng(2).standard_normal((theta.size, 2))
    VWs, Vbs = F.to_layers(V, Ws, bs)
    assert [v.shape for v in VWs] == [(*W.shape, 2) for W in Ws]
    assert np.array_equal(F.from_layers(VWs, Vbs), V)
    assert np.array_equal(F.from_layers(Ws, bs), theta)

    for product in (F.hvp, F.gnvp):
        flat = product(Ws, bs, X, Y, V, **o)
        HW, Hb = product(Ws, bs, X, Y, (VWs, Vbs), **o)
        assert np.array_equal(F.from_layers(HW, Hb), flat)
        one_W, one_b = product(Ws, bs, X, Y, F.to_layers(V[:, 0], Ws, bs), **o)
        assert [h.shape for h in one_W] == [W.shape for W in Ws]
        assert np.allclose(F.from_layers(one_W, one_b), flat[:, 0], rtol=1e-12, atol=1e-14)

    loss, (gW, gb) = F.loss_and_grad(Ws, bs, X, Y, layers=True, **o)
    assert np.array_equal(F.from_layers(gW, gb), F.loss_and_grad(Ws, bs, X, Y, **o)[1])
    dW, db = F.gnh_diagonal(Ws, bs, X, Y, layers=True, **o)
    assert len(dW) == len(Ws) and len(db) == (len(Ws) if case.bias else 0)
    jac_W, _ = F.vjp(Ws, bs, X, np.ones((X.shape[0], case.sizes[-1])), activation=o["activation"], layers=True)
    assert [j.shape for j in jac_W] == [W.shape for W in Ws]


@pytest.mark.parametrize("case", FCASES[:2], ids=IDS[:2])
def test_float32_follows_float64(case, backend):
    theta, X, Y = case.data()
    Ws64, bs64 = layers(case, theta)
    Ws32, bs32 = layers(case, theta, "float32")
    X32 = X.astype(np.float32)
    Y32 = Y.astype(np.float32) if Y.dtype.kind == "f" else Y
    V = np.random.default_rng(3).standard_normal((theta.size, 4))
    o = dict(opts(case), backend=backend)
    for product in (F.hvp, F.gnvp):
        out32 = product(Ws32, bs32, X32, Y32, V.astype(np.float32), **o)
        assert out32.dtype == np.float32
        assert rel_err(out32, product(Ws64, bs64, X, Y, V, **o)) < 1e-4
    loss32, g32 = F.loss_and_grad(Ws32, bs32, X32, Y32, **o)
    assert g32.dtype == np.float32
    assert rel_err(g32, F.loss_and_grad(Ws64, bs64, X, Y, **o)[1]) < 1e-4


def test_the_object_api_agrees_and_linearize_is_a_snapshot():
    case = FCASES[1]
    theta, X, Y = case.data()
    Ws, bs = layers(case, theta)
    net = F.mlp(Ws, bs, **opts(case))
    assert net.sizes == list(case.sizes) and net.bias and net.num_params == theta.size
    c = F.linearize(Ws, bs, X, Y, **opts(case))
    V = np.random.default_rng(4).standard_normal(theta.size)
    before = c.hvp(V)
    Ws[0][...] = 0.0  # changing the caller's arrays afterwards changes nothing
    assert np.array_equal(c.hvp(V), before)
    assert np.allclose(before, case.net(c.net.backend).linearize(theta, X, Y).hvp(V), rtol=1e-12, atol=1e-15)


def test_inputs_are_not_modified():
    case = FCASES[0]
    theta, X, Y = case.data()
    Ws, bs = layers(case, theta)
    V = np.random.default_rng(5).standard_normal((theta.size, 2))
    VWs, Vbs = F.to_layers(V.copy(), Ws, bs)
    copies = [a.copy() for a in (*Ws, *bs, X, Y, V, *VWs, *Vbs)]
    F.hvp(Ws, bs, X, Y, V)
    F.gnvp(Ws, bs, X, Y, (VWs, Vbs))
    F.loss_and_grad(Ws, bs, X, Y, layers=True)
    assert all(np.array_equal(a, b) for a, b in zip((*Ws, *bs, X, Y, V, *VWs, *Vbs), copies))


def test_errors_name_the_argument():
    case = FCASES[0]
    theta, X, Y = case.data()
    Ws, bs = layers(case, theta)
    N = theta.size
    with pytest.raises(TypeError, match="Ws must be a non-empty list"):
        F.loss_and_grad(Ws[0], bs, X, Y)
    with pytest.raises(TypeError, match="Ws must be a non-empty list"):
        F.loss_and_grad([], bs, X, Y)
    with pytest.raises(ValueError, match=r"Ws\[1\] must have 4 columns"):
        F.loss_and_grad([Ws[0], Ws[1].T], bs, X, Y)
    with pytest.raises(ValueError, match=r"Ws\[0\] must be a 2-D"):
        F.loss_and_grad([Ws[0].ravel(), Ws[1]], bs, X, Y)
    with pytest.raises(ValueError, match="bs must hold one bias vector per layer"):
        F.loss_and_grad(Ws, bs[:1], X, Y)
    with pytest.raises(ValueError, match=r"bs\[1\] must have shape"):
        F.loss_and_grad(Ws, [bs[0], bs[1][:-1]], X, Y)
    with pytest.raises(TypeError, match="mixed float32/float64"):
        F.loss_and_grad([Ws[0], Ws[1].astype(np.float32)], bs, X, Y)
    with pytest.raises(TypeError, match="X has dtype float32"):
        F.hvp(Ws, bs, X.astype(np.float32), Y, np.ones(N))
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        F.jvp(Ws, bs, X[:, :2], np.ones(N))
    with pytest.raises(ValueError, match=rf"V must have shape \({N},\) or \({N}, k\)"):
        F.hvp(Ws, bs, X, Y, np.ones(N + 1))
    with pytest.raises(ValueError, match=r"V: VWs\[0\] must have shape"):
        F.hvp(Ws, bs, X, Y, ([np.ones((3, 4)), np.ones((3, 4))], bs))
    with pytest.raises(ValueError, match="V: a per-layer vector must hold 2 bias arrays"):
        F.gnvp(Ws, bs, X, Y, (Ws, []))
    with pytest.raises(ValueError, match="loss: unknown loss 'hinge'"):
        F.hvp(Ws, bs, X, Y, np.ones(N), loss="hinge")
    with pytest.raises(ValueError, match="activation: unknown activation 'elu'"):
        F.gnvp(Ws, bs, X, Y, np.ones(N), activation="elu")
    with pytest.raises(ValueError, match="U must have shape"):
        F.vjp(Ws, bs, X, np.ones((X.shape[0], 2)))
    with pytest.raises(ValueError, match=rf"v must have shape \({N},\)"):
        F.to_layers(np.ones(N - 1), Ws, bs)
    with pytest.raises(ValueError, match="Y must have shape"):
        F.loss_and_grad(Ws, bs, X, Y[:, :1])
    with pytest.raises(TypeError, match="bs must be a list of bias vectors"):
        F.loss_and_grad(Ws, "b", X, Y)
    with pytest.raises(TypeError, match="Ws must be a non-empty list of arrays"):
        F.from_layers(Ws[0], bs)
    with pytest.raises(ValueError, match="bs must be None or a list of 2 arrays"):
        F.from_layers(Ws, bs[:1])
    with pytest.raises(ValueError, match=r"Ws\[1\] must have a trailing block axis \(3,\)"):
        F.from_layers([np.ones((*Ws[0].shape, 3)), np.ones((*Ws[1].shape, 2))], None)
    with pytest.raises(ValueError, match=r"bs\[0\] must have shape \(4, 3\) to match Ws\[0\]"):
        F.from_layers([np.ones((*W.shape, 3)) for W in Ws], [np.ones((4, 2)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="V: a per-layer vector must be \\(VWs, Vbs\\) with 2 weight arrays"):
        F.hvp(Ws, bs, X, Y, (Ws[:1], bs))
