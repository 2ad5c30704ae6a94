"""What the API does with valid inputs of every form: it never modifies them, accepts non-contiguous,
read-only, list and integer arrays, answers in θ's dtype, keeps snapshots, and handles edge shapes
(k = 0 blocks, n = 1 batches, (N,) versus (N, 1) vectors). Runs on every CPU engine that can run here.
"""

from __future__ import annotations

import numpy as np
import pytest

import pyhessk as hk
from cases import Case

ENGINES = [e for e in hk.available_backends() if e != "cuda"]
LOSSES = ["mse", "softmax_cross_entropy", "sigmoid_cross_entropy"]
SIZES = [3, 4, 2]


def make(loss="mse", engine="numpy", dtype="float64", n=6, sizes=SIZES, **kw):
    """A small tanh net on ``engine`` and a valid batch (theta, X, Y) for it."""
    case = Case(tuple(sizes), "tanh", loss, n=n, seed=7, **kw)
    return (case.net(engine), *case.data(dtype))


def everything(net, theta, X, Y, V, U, rows, cols):
    """Every public method on these arrays; a dict of results (each a fresh object)."""
    c = net.linearize(theta, X, Y)
    e = c.gnh_entries()
    Ws, bs = net.unflatten(theta)
    return {
        "forward": net.forward(theta, X),
        "loss": net.loss(theta, X, Y),
        "grad": net.grad(theta, X, Y),
        "c.loss": c.loss,
        "c.grad": c.grad,
        "hvp": c.hvp(V),
        "hvp1": c.hvp(V[:, 0]),
        "gnvp": c.gnvp(V),
        "jvp": c.jvp(V),
        "vjp": c.vjp(U),
        "hessian": c.hessian(),
        "gnh": c.gnh(),
        "entries": e.entries(rows, cols),
        "block": e.block(rows, cols),
        "column": e.column(cols),
        "diagonal": e.diagonal(),
        "estimate": e.estimate(rows, cols, eps=0.9, delta=0.9, seed=1),
        "hk.hvp": hk.hvp(net, theta, X, Y, V),
        "hk.gnvp": hk.gnvp(net, theta, X, Y, V),
        "flatten": net.flatten([np.array(W) for W in Ws], [np.array(b) for b in bs]),
    }


def arrays(net, theta, X, Y, k=3):
    rng = np.random.default_rng(11)
    N, n, d = net.num_params, X.shape[0], net.sizes[-1]
    V = rng.standard_normal((N, k)).astype(theta.dtype)
    U = rng.standard_normal((n, d)).astype(theta.dtype)
    rows, cols = np.array([0, 5, N - 1, 7]), np.array([3, 5, 2, N - 1])
    return V, U, rows, cols


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_inputs_never_modified_and_read_only_inputs_work(engine, loss, dtype):
    net, theta, X, Y = make(loss, engine, dtype)
    V, U, rows, cols = arrays(net, theta, X, Y)
    inputs = [theta, X, Y, V, U, rows, cols]
    copies = [a.copy() for a in inputs]
    first = everything(net, *inputs)
    for a, b in zip(inputs, copies):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.flags.writeable
    for a in inputs:
        a.flags.writeable = False
    second = everything(net, *inputs)
    assert_same(first, second)
    for a, b in zip(inputs, copies):
        np.testing.assert_array_equal(a, b)
    Ws, bs = net.unflatten(theta)  # views of a read-only θ are read-only views
    assert not Ws[0].flags.writeable and np.shares_memory(Ws[0], theta)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss", LOSSES)
def test_non_contiguous_inputs_equal_contiguous(engine, loss):
    net, theta, X, Y = make(loss, engine)
    V, U, rows, cols = arrays(net, theta, X, Y)
    base = everything(net, theta, X, Y, V, U, rows, cols)

    big = np.zeros(2 * theta.size)
    big[::2] = theta
    theta_s = big[::2]
    X_t = np.array(X.T, order="C").T  # a transposed (Fortran-order) view
    Vbig = np.zeros((V.shape[0], 2 * V.shape[1]))
    Vbig[:, ::2] = V
    V_s = Vbig[:, ::2]
    U_t = np.array(U.T, order="C").T
    Y_s = Y[::-1][::-1] if Y.ndim == 1 else np.asfortranarray(Y)
    rbig = np.repeat(rows, 2)
    rows_s = rbig[::2]
    strided = [theta_s, X_t, Y_s, V_s, U_t, rows_s, cols]
    assert not theta_s.flags.c_contiguous and not X_t.flags.c_contiguous and not V_s.flags.c_contiguous
    assert not U_t.flags.c_contiguous and not rows_s.flags.c_contiguous
    assert_same(base, everything(net, *strided))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss", LOSSES)
def test_curvature_is_a_snapshot(engine, loss):
    net, theta, X, Y = make(loss, engine)
    V, U, rows, cols = arrays(net, theta, X, Y)
    c = net.linearize(theta, X, Y)
    lazy = net._linearize_forward(theta, X, Y)  # gradient pass deferred until first needed
    e_before = c.gnh_entries()

    def answers(cv, with_entries=True):
        out = {"loss": cv.loss, "grad": cv.grad, "hvp": cv.hvp(V), "gnvp": cv.gnvp(V), "jvp": cv.jvp(V),
               "vjp": cv.vjp(U), "gnh": cv.gnh()}
        if with_entries:
            e = cv.gnh_entries()
            out.update(entries=e.entries(rows, cols), diagonal=e.diagonal(), column=e.column(cols))
        return out

    before = answers(c)
    ref_lazy_gnvp = lazy.gnvp(V)
    theta += 0.5
    X *= -2.0
    if loss == "softmax_cross_entropy":
        Y[:] = (Y + 1) % net.sizes[-1]
    elif loss == "sigmoid_cross_entropy":
        Y[:] = 1.0 - Y
    else:
        Y += 3.0
    after = answers(c)
    assert_same(before, after)
    assert c.gnh_entries() is e_before
    np.testing.assert_array_equal(lazy.gnvp(V), ref_lazy_gnvp)
    np.testing.assert_array_equal(lazy.grad, before["grad"])  # backward runs now, on the old θ, X, Y
    np.testing.assert_array_equal(lazy.hvp(V), before["hvp"])
    fresh = net.linearize(theta, X, Y)  # and the change is real: a new snapshot differs
    assert not np.allclose(fresh.grad, before["grad"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_python_lists_are_converted_to_theta_dtype(engine, dtype):
    net, theta, X, Y = make("mse", engine, dtype)
    V, U, rows, cols = arrays(net, theta, X, Y)
    ref = everything(net, theta, X, Y, V, U, rows, cols)
    c = net.linearize(theta, X.tolist(), Y.tolist())
    assert c.dtype == theta.dtype
    np.testing.assert_array_equal(c.grad, ref["c.grad"])
    for name, out in [("hvp", c.hvp(V.tolist())), ("gnvp", c.gnvp(V.tolist())), ("jvp", c.jvp(V.tolist())),
                      ("vjp", c.vjp(U.tolist())), ("hvp1", c.hvp(V[:, 0].tolist())),
                      ("entries", c.gnh_entries().entries(rows.tolist(), cols.tolist())),
                      ("forward", net.forward(theta, X.tolist()))]:
        assert out.dtype == theta.dtype, name
        np.testing.assert_array_equal(out, ref[name], err_msg=name)
    # a θ given as a list has no precision of its own: it is float64, and so are lists given with it
    out = net.forward(theta.tolist(), X.tolist())
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, net.forward(theta.astype(np.float64), X.astype(np.float64)))


def test_labels_as_list_and_one_hot_rows_agree():
    net, theta, X, Y = make("softmax_cross_entropy")
    g = net.grad(theta, X, Y)
    np.testing.assert_array_equal(net.grad(theta, X, Y.tolist()), g)
    np.testing.assert_array_equal(net.grad(theta, X, Y.astype(np.uint8)), g)
    np.testing.assert_allclose(net.grad(theta, X, np.eye(2)[Y]), g, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_integer_inputs_are_converted(dtype):
    net, theta, X, Y = make("mse", dtype=dtype)
    Xi = np.arange(X.size).reshape(X.shape) % 5 - 2
    Yi = np.arange(Y.size).reshape(Y.shape) % 3
    ref = net.linearize(theta, Xi.astype(dtype), Yi.astype(dtype))
    for Xa, Ya in [(Xi, Yi), (Xi.astype(np.int32), Yi.astype(np.uint16)), (Xi.astype(np.int8), Yi)]:
        c = net.linearize(theta, Xa, Ya)
        assert c.grad.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(c.grad, ref.grad)
        np.testing.assert_array_equal(net.forward(theta, Xa), net.forward(theta, Xi.astype(dtype)))
    V = np.arange(net.num_params) % 4 - 1
    np.testing.assert_array_equal(ref.hvp(V), ref.hvp(V.astype(dtype)))
    # an integer θ carries no precision either: it becomes float64
    th_int = np.round(theta * 3).astype(np.int64)
    assert net.grad(th_int, Xi, Yi).dtype == np.float64


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_results_come_back_in_theta_dtype(engine, loss, dtype):
    net, theta, X, Y = make(loss, engine, dtype)
    V, U, rows, cols = arrays(net, theta, X, Y)
    out = everything(net, theta, X, Y, V, U, rows, cols)
    for key in ("loss", "c.loss"):
        assert type(out[key]) is float, key
        assert np.isfinite(out[key])
    for key, value in out.items():
        if key not in ("loss", "c.loss"):
            assert isinstance(value, np.ndarray) and value.dtype == np.dtype(dtype), key
            assert np.isfinite(value).all(), key
    assert net.init(dtype=dtype).dtype == np.dtype(dtype)
    assert net.init(dtype=np.dtype(dtype)).dtype == np.dtype(dtype)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_k_zero_blocks_are_empty_of_the_right_shape(engine, dtype):
    net, theta, X, Y = make("mse", engine, dtype)
    N, n, d = net.num_params, X.shape[0], net.sizes[-1]
    c = net.linearize(theta, X, Y)
    e = c.gnh_entries()
    V0 = np.empty((N, 0), dtype)
    cases = [
        (c.hvp(V0), (N, 0)),
        (c.gnvp(V0), (N, 0)),
        (c.jvp(V0), (n, d, 0)),
        (c.vjp(np.empty((n, d, 0), dtype)), (N, 0)),
        (hk.hvp(net, theta, X, Y, V0), (N, 0)),
        (hk.gnvp(net, theta, X, Y, V0), (N, 0)),
        (e.entries([], []), (0,)),
        (e.entries(np.empty(0, int), np.empty(0, int)), (0,)),
        (e.estimate([], [], seed=0), (0,)),
        (e.block([], [1, 2]), (0, 2)),
        (e.block([1], []), (1, 0)),
        (e.block([], []), (0, 0)),
        (e.column([]), (N, 0)),
    ]
    for i, (out, shape) in enumerate(cases):
        assert isinstance(out, np.ndarray) and out.shape == shape and out.dtype == np.dtype(dtype), i


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("loss", LOSSES)
def test_single_sample_batches(engine, loss):
    net, theta, X, Y = make(loss, engine, n=1)
    assert X.shape == (1, 3)
    c = net.linearize(theta, X, Y)
    N = net.num_params
    H, G = c.hessian(), c.gnh()
    assert H.shape == G.shape == (N, N) and np.isfinite(H).all() and np.isfinite(G).all()
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(G, G.T, atol=1e-12)
    assert np.linalg.matrix_rank(G, tol=1e-10) <= net.sizes[-1]  # one sample: rank(G) ≤ d
    E = np.eye(N)[:, [0, 7, N - 1]]
    np.testing.assert_allclose(c.hvp(E), H[:, [0, 7, N - 1]], rtol=1e-12, atol=1e-14)
    e = c.gnh_entries()
    np.testing.assert_allclose(e.diagonal(), np.diag(G), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(e.estimate([0, 7], [7, N - 1], seed=0), G[[0, 7], [7, N - 1]], rtol=1e-12, atol=1e-14)
    assert net.forward(theta, X).shape == (1, 2) and c.jvp(E).shape == (1, 2, 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_vector_and_single_column_block_shapes(engine):
    net, theta, X, Y = make("softmax_cross_entropy", engine)
    N, n, d = net.num_params, X.shape[0], net.sizes[-1]
    c = net.linearize(theta, X, Y)
    v = np.random.default_rng(5).standard_normal(N)
    u = np.random.default_rng(6).standard_normal((n, d))
    for product in (c.hvp, c.gnvp):
        one, col = product(v), product(v[:, None])
        assert one.shape == (N,) and col.shape == (N, 1)
        np.testing.assert_array_equal(one, col[:, 0])
    assert c.jvp(v).shape == (n, d) and c.jvp(v[:, None]).shape == (n, d, 1)
    np.testing.assert_array_equal(c.jvp(v), c.jvp(v[:, None])[:, :, 0])
    assert c.vjp(u).shape == (N,) and c.vjp(u[:, :, None]).shape == (N, 1)
    np.testing.assert_array_equal(c.vjp(u), c.vjp(u[:, :, None])[:, 0])
    assert hk.hvp(net, theta, X, Y, v).shape == (N,) and hk.gnvp(net, theta, X, Y, v[:, None]).shape == (N, 1)
    e = c.gnh_entries()
    assert e.column(3).shape == (N,) and e.column([3]).shape == (N, 1)
    np.testing.assert_array_equal(e.column(3), e.column([3])[:, 0])
    assert e.entries(3, 4).shape == () and e.entries([3], [4]).shape == (1,)


def test_unflatten_flatten_round_trip_and_views():
    net = hk.MLP(SIZES)
    theta = net.init(seed=0)
    Ws, bs = net.unflatten(theta)
    assert [W.shape for W in Ws] == [(4, 3), (2, 4)] and [b.shape for b in bs] == [(4,), (2,)]
    assert all(np.shares_memory(a, theta) for a in Ws + bs)
    back = net.flatten(Ws, bs)
    np.testing.assert_array_equal(back, theta)
    assert not np.shares_memory(back, theta)
    # lists and integer arrays of weights are converted; float32 weights give a float32 θ
    np.testing.assert_array_equal(net.flatten([W.tolist() for W in Ws], [b.tolist() for b in bs]), theta)
    assert net.flatten([W.astype(np.float32) for W in Ws], [b.astype(np.float32) for b in bs]).dtype == np.float32
    strided = np.zeros(2 * theta.size)
    strided[::2] = theta
    Ws_s, bs_s = net.unflatten(strided[::2])
    np.testing.assert_array_equal(np.concatenate([a.ravel() for pair in zip(Ws_s, bs_s) for a in pair]), theta)
