"""Validation at the API boundary: every bad argument raises a clear error that names the argument.

ValueError for wrong values (lengths, widths, batch sizes, ranges, NaN/Inf, unknown names), TypeError for
wrong types (dtypes, mixed float32/float64, GPU arrays on a CPU engine), IndexError for entry indices out
of range, RuntimeError for a named engine that cannot run here. Never a crash, hang or silent NaN.
"""

from __future__ import annotations

import numpy as np
import pytest

import pyhessk as hk
from cases import Case

N_SMALL = 3 * 4 + 4 + 4 * 2 + 2  # [3, 4, 2] with biases: 26


class FakeGpuArray:
    """Anything exposing ``__cuda_array_interface__`` (a CuPy array, a CUDA torch tensor, ...)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": "<f8", "data": (0, False), "version": 3}


def make(loss: str = "mse", sizes: tuple[int, ...] = (3, 4, 2), n: int = 5, dtype: str = "float64", **kw):
    """A small tanh net and a valid batch (theta, X, Y) for it."""
    case = Case(tuple(sizes), "tanh", loss, n=n, **kw)
    return (case.net(), *case.data(dtype))


def call(method: str, net, theta, X, Y):
    if method == "forward":
        return net.forward(theta, X)
    if method in ("hvp", "gnvp"):
        return getattr(hk, method)(net, theta, X, Y, np.zeros(net.num_params, getattr(theta, "dtype", float)))
    return getattr(net, method)(theta, X, Y)


METHODS = ["forward", "loss", "grad", "linearize", "hvp", "gnvp"]
METHODS_Y = ["loss", "grad", "linearize", "hvp", "gnvp"]


# ---- the constructor ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"sizes": [3]}, ValueError, r"sizes.*at least"),
        ({"sizes": []}, ValueError, r"sizes.*at least"),
        ({"sizes": [3, 0, 2]}, ValueError, r"sizes.*at least one unit"),
        ({"sizes": [3, -4, 2]}, ValueError, r"sizes.*at least one unit"),
        ({"sizes": [3, 4.0, 2]}, TypeError, r"sizes\[1\] must be an integer"),
        ({"sizes": [3, True, 2]}, TypeError, r"sizes\[1\] must be an integer, got a bool"),
        ({"sizes": [3, "4", 2]}, TypeError, r"sizes\[1\] must be an integer"),
        ({"sizes": "342"}, TypeError, r"sizes must be a sequence"),
        ({"sizes": 3}, TypeError, r"sizes must be a sequence"),
        ({"activation": "bogus"}, ValueError, r"activation: unknown activation 'bogus'"),
        ({"activation": ["tanh", "relu"]}, ValueError, r"activation: a list needs one name per hidden layer \(1\)"),
        ({"activation": []}, ValueError, r"activation: a list needs one name per hidden layer"),
        ({"activation": ["bogus"]}, ValueError, r"activation\[0\]: unknown activation"),
        ({"activation": [3]}, TypeError, r"activation\[0\] must be a string"),
        ({"activation": 3}, TypeError, r"activation must be a name or a list"),
        ({"activation": b"tanh"}, TypeError, r"activation must be a name or a list"),
        ({"loss": "hinge"}, ValueError, r"loss: unknown loss 'hinge'"),
        ({"loss": None}, TypeError, r"loss must be a string"),
        ({"l2": -0.1}, ValueError, r"l2 must be >= 0"),
        ({"l2": float("nan")}, ValueError, r"l2 must be finite"),
        ({"l2": "0.1"}, TypeError, r"l2 must be a real number"),
        ({"l2": True}, TypeError, r"l2 must be a real number"),
        ({"reduction": "average"}, ValueError, r"reduction must be one of \['mean', 'sum'\]"),
        ({"reduction": 1}, TypeError, r"reduction must be a string"),
        ({"bias": 1}, TypeError, r"bias must be True or False"),
        ({"bias": "yes"}, TypeError, r"bias must be True or False"),
        ({"backend": "tensorflow"}, ValueError, r"backend: unknown engine 'tensorflow'"),
        ({"backend": 0}, TypeError, r"backend must be a string"),
    ],
)
def test_constructor_rejects(kwargs, exc, match):
    args = {"sizes": [3, 4, 2], **kwargs}
    with pytest.raises(exc, match=match):
        hk.MLP(**args)


@pytest.mark.parametrize("engine", ["cuda", "cpp", "numba", "numpy"])
def test_named_engine_that_cannot_run_raises_runtime_error(engine):
    """E.g. hk.MLP([2, 1], backend="cuda") where no cuda engine is installed: RuntimeError saying why."""
    if engine in hk.available_backends():
        assert hk.MLP([2, 1], backend=engine).backend == engine
        return
    why = r"(not available|disabled|GPU|import|installed|built)"
    with pytest.raises(RuntimeError, match=rf"backend '{engine}' cannot run: .*{why}"):
        hk.MLP([2, 1], backend=engine)


def test_constructor_accepts_normalised_names():
    net = hk.MLP(np.array([3, 4, 2]), activation=("TANH",), loss="Cross-Entropy", reduction="SUM", l2=np.float32(0.5))
    assert (net.sizes, net.activations, net.loss_name, net.reduction, net.l2) == (
        [3, 4, 2], ["tanh"], "softmax_cross_entropy", "sum", 0.5)


# ---- init, flatten, unflatten ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "complex128", "int64", "bogus", np.longdouble, object])
def test_init_rejects_dtype(dtype):
    net = hk.MLP([3, 4, 2])
    with pytest.raises(TypeError, match=r"dtype must be float32 or float64"):
        net.init(dtype=dtype)


@pytest.mark.parametrize(
    "theta, exc, match",
    [
        (np.zeros(N_SMALL - 1), ValueError, rf"theta must have length {N_SMALL}"),
        (np.zeros((N_SMALL, 1)), ValueError, r"theta must be 1-D"),
        (np.zeros(N_SMALL, dtype=np.int64), TypeError, r"theta must be a float32 or float64 NumPy array.*int64"),
        (np.zeros(N_SMALL, dtype=np.float16), TypeError, r"theta must be a float32 or float64"),
        ([0.0] * N_SMALL, TypeError, r"theta must be a float32 or float64 NumPy array.*list"),
        (FakeGpuArray((N_SMALL,)), TypeError, r"theta is a GPU array.*cuda"),
    ],
)
def test_unflatten_rejects(theta, exc, match):
    with pytest.raises(exc, match=match):
        hk.MLP([3, 4, 2]).unflatten(theta)


def _layers(dtype=np.float64):
    return [np.zeros((4, 3), dtype), np.zeros((2, 4), dtype)], [np.zeros(4, dtype), np.zeros(2, dtype)]


@pytest.mark.skipif("cuda" in hk.available_backends(), reason="here backend='auto' sends GPU arrays to 'cuda'")
def test_gpu_weights_name_why_no_engine_takes_them():
    from pyhessk import functional as F

    Ws, bs = _layers()
    gpu_Ws = [FakeGpuArray((4, 3)), Ws[1]]
    X, Y = np.zeros((5, 3)), np.zeros((5, 2))
    auto = r"Ws\[0\] is a GPU array, but the 'cuda' engine cannot run here"
    for call in (lambda: hk.MLP([3, 4, 2]).flatten(gpu_Ws, bs), lambda: F.loss_and_grad(gpu_Ws, bs, X, Y),
                 lambda: F.hvp(gpu_Ws, bs, X, Y, np.zeros(26))):
        with pytest.raises(TypeError, match=auto):
            call()
    with pytest.raises(TypeError, match=r"theta is a GPU array, but the 'cuda' engine cannot run here"):
        hk.MLP([3, 4, 2]).unflatten(FakeGpuArray((26,)))
    cpu = r"Ws\[0\] is a GPU array, but this MLP runs on a CPU engine"
    with pytest.raises(TypeError, match=cpu):
        hk.MLP([3, 4, 2], backend="numpy").flatten(gpu_Ws, bs)
    with pytest.raises(TypeError, match=cpu):
        F.loss_and_grad(gpu_Ws, bs, X, Y, backend="numpy")


@pytest.mark.parametrize(
    "edit, exc, match",
    [
        (lambda W, b: (W[:1], b), ValueError, r"Ws must be a list of 2 weight matrices.*got 1"),
        (lambda W, b: (W + W[:1], b), ValueError, r"Ws must be a list of 2 weight matrices.*got 3"),
        (lambda W, b: (W, b[:1]), ValueError, r"bs must be a list of 2 bias vectors.*got 1"),
        (lambda W, b: (W, None), ValueError, r"bs must be a list of 2 bias vectors.*got 0"),
        (lambda W, b: (np.zeros((2, 4, 3)), b), TypeError, r"Ws must be a list"),
        (lambda W, b: (W, 3), TypeError, r"bs must be a list"),
        (lambda W, b: ([W[0], W[1].T], b), ValueError, r"Ws\[1\] must have shape \(2, 4\), got \(4, 2\)"),
        (lambda W, b: ([W[0], W[1].ravel()], b), ValueError, r"Ws\[1\] must be 2-D"),
        (lambda W, b: (W, [b[0], np.zeros(3)]), ValueError, r"bs\[1\] must have shape \(2,\), got \(3,\)"),
        (lambda W, b: (W, [b[0], np.zeros((2, 1))]), ValueError, r"bs\[1\] must be 1-D"),
        (lambda W, b: ([W[0], W[1].astype(np.float32)], b), TypeError,
         r"Ws\[1\] has dtype float32 but Ws\[0\] is float64"),
        (lambda W, b: (W, [b[0], b[1].astype(np.float32)]), TypeError,
         r"bs\[1\] has dtype float32 but Ws\[0\] is float64"),
        (lambda W, b: ([W[0], np.full((2, 4), np.nan)], b), ValueError, r"Ws\[1\] contains NaN or Inf"),
        (lambda W, b: ([W[0].astype(np.float16), W[1]], b), TypeError, r"Ws\[0\] has dtype float16"),
    ],
)
def test_flatten_rejects(edit, exc, match):
    Ws, bs = edit(*_layers())
    with pytest.raises(exc, match=match):
        hk.MLP([3, 4, 2]).flatten(Ws, bs)


def test_flatten_without_bias_rejects_biases():
    net = hk.MLP([3, 4, 2], bias=False)
    Ws, bs = _layers()
    with pytest.raises(ValueError, match=r"bs must be a list of 0 bias vectors \(bias=False\), got 2"):
        net.flatten(Ws, bs)
    assert net.flatten(Ws).shape == (net.num_params,) == (20,)


# ---- theta, X, Y through forward / loss / grad / linearize / one-shot products -----------------------
BAD_THETA = [
    (lambda t: t[:-1], ValueError, rf"theta must have length {N_SMALL}"),
    (lambda t: t[:, None], ValueError, r"theta must be 1-D"),
    (lambda t: t[0], ValueError, r"theta must be 1-D"),
    (lambda t: t.astype(np.float16), TypeError, r"theta has dtype float16"),
    (lambda t: t.astype(np.longdouble), TypeError, r"theta has dtype"),
    (lambda t: t.astype(np.complex128), TypeError, r"theta must be a real float array.*complex128"),
    (lambda t: t.astype(object), TypeError, r"theta must be a real float array.*object"),
    (lambda t: np.where(np.arange(t.size) == 3, np.nan, t), ValueError, r"theta contains NaN or Inf"),
    (lambda t: np.where(np.arange(t.size) == 3, np.inf, t), ValueError, r"theta contains NaN or Inf"),
    (lambda t: FakeGpuArray(t.shape), TypeError, r"theta is a GPU array.*'cuda' engine"),
    (lambda t: None, TypeError, r"theta must be a real float array"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("edit, exc, match", BAD_THETA)
def test_bad_theta(method, edit, exc, match):
    net, theta, X, Y = make()
    with pytest.raises(exc, match=match):
        call(method, net, edit(theta), X, Y)


BAD_X = [
    (lambda x: x[:, :2], ValueError, r"X must have shape \(n, 3\).*got \(5, 2\)"),
    (lambda x: x.T, ValueError, r"X must have shape \(n, 3\)"),
    (lambda x: x[0], ValueError, r"X must be 2-D, got shape \(3,\)"),
    (lambda x: x[None], ValueError, r"X must be 2-D"),
    (lambda x: x[:0], ValueError, r"X must hold at least one sample"),
    (lambda x: np.where(x > 0.5, np.nan, x), ValueError, r"X contains NaN or Inf"),
    (lambda x: np.where(x > 0.5, np.inf, x), ValueError, r"X contains NaN or Inf"),
    (lambda x: x.astype(np.float32), TypeError, r"X has dtype float32 but theta is float64: mixed float32/float64"),
    (lambda x: x.astype(np.float16), TypeError, r"X has dtype float16"),
    (lambda x: x.astype(np.complex64), TypeError, r"X must be a real float array"),
    (lambda x: [[1.0, 2.0], [3.0]], TypeError, r"X must be an array of floats"),
    (lambda x: FakeGpuArray(x.shape), TypeError, r"X is a GPU array.*'cuda' engine"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("edit, exc, match", BAD_X)
def test_bad_X(method, edit, exc, match):
    net, theta, X, Y = make()
    with pytest.raises(exc, match=match):
        call(method, net, theta, edit(X), Y)


def test_float32_theta_rejects_float64_X_and_Y():
    net, theta, X, Y = make(dtype="float32")
    with pytest.raises(TypeError, match=r"X has dtype float64 but theta is float32"):
        net.grad(theta, X.astype(np.float64), Y)
    with pytest.raises(TypeError, match=r"Y has dtype float64 but theta is float32"):
        net.grad(theta, X, Y.astype(np.float64))


BAD_Y = [
    # (loss, edit of the valid Y, exception, message)
    ("mse", lambda y: y[:-1], ValueError, r"Y must have shape \(5, 2\).*got \(4, 2\)"),
    ("mse", lambda y: y[:, :1], ValueError, r"Y must have shape \(5, 2\).*got \(5, 1\)"),
    ("mse", lambda y: y[:, 0], ValueError, r"Y must have shape \(5, 2\)"),
    ("mse", lambda y: y[None], ValueError, r"Y must be 1-D or 2-D"),
    ("mse", lambda y: np.where(y > 0, np.nan, y), ValueError, r"Y contains NaN or Inf"),
    ("mse", lambda y: np.where(y > 0, -np.inf, y), ValueError, r"Y contains NaN or Inf"),
    ("mse", lambda y: y.astype(np.float32), TypeError, r"Y has dtype float32 but theta is float64"),
    ("mse", lambda y: y.astype(complex), TypeError, r"Y must be a real float array"),
    ("mse", lambda y: None, TypeError, r"Y must be a real float array"),
    ("mse", lambda y: FakeGpuArray(y.shape), TypeError, r"Y is a GPU array.*'cuda' engine"),
    ("softmax_cross_entropy", lambda y: np.array([0, 1, 2, 1, 0]), ValueError, r"Y: label 2 is out of range.*\[0, 2\)"),
    ("softmax_cross_entropy", lambda y: np.array([0, 1, -1, 1, 0]), ValueError, r"Y: label -1 is out of range"),
    ("softmax_cross_entropy", lambda y: y[:-1], ValueError, r"Y: integer class labels .*\(5,\), got \(4,\)"),
    ("softmax_cross_entropy", lambda y: y.astype(np.float64), TypeError, r"Y: class labels must be integers.*float64"),
    ("softmax_cross_entropy", lambda y: y.astype(bool), TypeError, r"Y: softmax_cross_entropy takes integer labels"),
    ("softmax_cross_entropy", lambda y: np.full((5, 2), 0.4), ValueError, r"Y: probability targets must be .*sum to 1"),
    ("softmax_cross_entropy", lambda y: np.tile([1.5, -0.5], (5, 1)), ValueError, r"Y: probability .* non-negative"),
    ("softmax_cross_entropy", lambda y: np.full((5, 3), 1 / 3), ValueError, r"Y must have shape \(5, 2\)"),
    ("softmax_cross_entropy", lambda y: np.full((5, 2), np.nan), ValueError, r"Y contains NaN or Inf"),
    ("softmax_cross_entropy", lambda y: np.full((5, 2), 0.5, np.float32), TypeError, r"Y has dtype float32 but theta"),
    ("softmax_cross_entropy", lambda y: FakeGpuArray((5,)), TypeError, r"Y is a GPU array.*'cuda' engine"),
    ("sigmoid_cross_entropy", lambda y: y + 1.0, ValueError, r"Y: sigmoid_cross_entropy targets must lie in \[0, 1\]"),
    ("sigmoid_cross_entropy", lambda y: y - 1.0, ValueError, r"Y: sigmoid_cross_entropy targets must lie in \[0, 1\]"),
    ("sigmoid_cross_entropy", lambda y: y[:3], ValueError, r"Y must have shape \(5, 2\)"),
    ("sigmoid_cross_entropy", lambda y: np.where(y > 0.5, np.nan, y), ValueError, r"Y contains NaN or Inf"),
]


@pytest.mark.parametrize("method", METHODS_Y)
@pytest.mark.parametrize("loss, edit, exc, match", BAD_Y)
def test_bad_Y(method, loss, edit, exc, match):
    net, theta, X, Y = make(loss=loss)
    with pytest.raises(exc, match=match):
        call(method, net, theta, X, edit(Y))


def test_valid_targets_are_accepted():
    """The accepted forms next to the rejected ones: the checks are not over-eager."""
    for loss, Y in [("softmax_cross_entropy", np.array([0, 1, 1, 0, 1], np.uint8)),
                    ("softmax_cross_entropy", np.eye(2)[[0, 1, 1, 0, 1]] * 0.5 + 0.25),
                    ("sigmoid_cross_entropy", np.array([[0.0, 1.0]] * 5)),
                    ("mse", np.arange(10).reshape(5, 2))]:
        net, theta, X, _ = make(loss=loss)
        assert np.isfinite(net.loss(theta, X, Y))


# ---- curvature products ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def curv():
    net, theta, X, Y = make()
    return net.linearize(theta, X, Y)


BAD_V = [
    (np.zeros(N_SMALL - 1), ValueError, rf"V must have shape \({N_SMALL},\) or .*got \({N_SMALL - 1},\)"),
    (np.zeros((2, N_SMALL)), ValueError, rf"V must have shape \({N_SMALL},\) or \({N_SMALL}, k\)"),
    (np.zeros((N_SMALL, 2, 1)), ValueError, r"V must be 1-D or 2-D"),
    (np.float64(1.0), ValueError, r"V must be 1-D or 2-D"),
    (np.zeros(N_SMALL, np.float32), TypeError, r"V has dtype float32 but theta is float64: mixed"),
    (np.zeros(N_SMALL, np.float16), TypeError, r"V has dtype float16"),
    (np.zeros(N_SMALL, np.complex128), TypeError, r"V must be a real float array"),
    (np.full(N_SMALL, np.nan), ValueError, r"V contains NaN or Inf"),
    (np.full((N_SMALL, 2), np.inf), ValueError, r"V contains NaN or Inf"),
    (FakeGpuArray((N_SMALL,)), TypeError, r"V is a GPU array.*'cuda' engine"),
    ("abc", TypeError, r"V must be a real float array"),
]


@pytest.mark.parametrize("product", ["hvp", "gnvp", "jvp"])
@pytest.mark.parametrize("V, exc, match", BAD_V)
def test_bad_V(curv, product, V, exc, match):
    with pytest.raises(exc, match=match):
        getattr(curv, product)(V)


@pytest.mark.parametrize("helper", [hk.hvp, hk.gnvp])
def test_one_shot_helpers_check_V(helper):
    net, theta, X, Y = make()
    with pytest.raises(ValueError, match=r"V must have shape"):
        helper(net, theta, X, Y, np.zeros(3))
    with pytest.raises(TypeError, match=r"V has dtype float32"):
        helper(net, theta, X, Y, np.zeros(N_SMALL, np.float32))


@pytest.mark.parametrize(
    "U, exc, match",
    [
        (np.zeros((4, 2)), ValueError, r"U must have shape \(5, 2\) or \(5, 2, k\).*got \(4, 2\)"),
        (np.zeros((5, 3)), ValueError, r"U must have shape \(5, 2\)"),
        (np.zeros((2, 5)), ValueError, r"U must have shape \(5, 2\)"),
        (np.zeros((5, 3, 1)), ValueError, r"U must have shape \(5, 2\) or \(5, 2, k\)"),
        (np.zeros(10), ValueError, r"U must be 2-D or 3-D"),
        (np.zeros((5, 2), np.float32), TypeError, r"U has dtype float32 but theta is float64"),
        (np.full((5, 2), np.nan), ValueError, r"U contains NaN or Inf"),
        (FakeGpuArray((5, 2)), TypeError, r"U is a GPU array.*'cuda' engine"),
    ],
)
def test_bad_U(curv, U, exc, match):
    with pytest.raises(exc, match=match):
        curv.vjp(U)


def test_dense_guard_default_refuses_large_nets():
    net = hk.MLP([100, 100, 1])
    assert net.num_params == 10201
    rng = np.random.default_rng(0)
    c = net.linearize(net.init(seed=0), rng.standard_normal((2, 100)), rng.standard_normal((2, 1)))
    for dense in (c.hessian, c.gnh):
        with pytest.raises(ValueError, match=r"10201 × 10201.*10201 exceeds max_params=8192.*raise max_params"):
            dense()


@pytest.mark.parametrize("dense", ["hessian", "gnh"])
def test_dense_guard_respects_max_params(curv, dense):
    f = getattr(curv, dense)
    with pytest.raises(ValueError, match=rf"num_params {N_SMALL} exceeds max_params=10"):
        f(max_params=10)
    with pytest.raises(ValueError, match=rf"exceeds max_params={N_SMALL - 1}"):
        f(max_params=N_SMALL - 1)
    assert f(max_params=N_SMALL).shape == (N_SMALL, N_SMALL)  # the limit is inclusive
    with pytest.raises(ValueError, match=r"max_params must be at least 1"):
        f(max_params=0)
    with pytest.raises(TypeError, match=r"max_params must be an integer"):
        f(max_params=1e9)
    with pytest.raises(ValueError, match=r"chunk_size must be at least 1"):
        f(chunk_size=0)
    with pytest.raises(TypeError, match=r"chunk_size must be an integer"):
        f(chunk_size=2.5)


# ---- entrywise Gauss-Newton --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ent(curv):
    return curv.gnh_entries()


@pytest.mark.parametrize("accessor", ["entries", "estimate"])
@pytest.mark.parametrize(
    "rows, cols, exc, match",
    [
        ([0, 1, 2], [0, 1], ValueError, r"rows and cols must have equal lengths"),
        ([0], [], ValueError, r"rows and cols must have equal lengths"),
        ([0, N_SMALL], [0, 1], IndexError, rf"rows: index {N_SMALL} is out of range for {N_SMALL} parameters"),
        ([0, 1], [0, -1], IndexError, r"cols: index -1 is out of range"),
        ([0, 1], [0, 10**12], IndexError, r"cols: index 1000000000000 is out of range"),
        # beyond int64: reported as given, not wrapped round to a negative index
        ([0, 1], np.array([0, 2**64 - 1], np.uint64), IndexError, r"cols: index 18446744073709551615 is out"),
        ([0, 1], [0, 2**63], IndexError, r"cols: index 9223372036854775808 is out of range"),
        ([0, 1], [0, 2**70], IndexError, r"cols: index 1180591620717411303424 is out of range"),
        ([0.0, 1.0], [0, 1], TypeError, r"rows must hold integer indices, got dtype float64"),
        ([0, 1], [True, False], TypeError, r"cols must hold integer indices, got dtype bool"),
        ([[0, 1]], [[0, 1]], ValueError, r"rows must be a 1-D index array"),
        (FakeGpuArray((2,)), FakeGpuArray((2,)), TypeError, r"rows is a GPU array"),
    ],
)
def test_bad_entry_indices(ent, accessor, rows, cols, exc, match):
    with pytest.raises(exc, match=match):
        getattr(ent, accessor)(rows, cols)


@pytest.mark.parametrize(
    "I, J, exc, match",
    [
        ([0, N_SMALL], [0], IndexError, rf"I: index {N_SMALL} is out of range"),
        ([0], [-2], IndexError, r"J: index -2 is out of range"),
        ([0.5], [0], TypeError, r"I must hold integer indices"),
        ([0], np.zeros((2, 2), int), ValueError, r"J must be a 1-D index array"),
    ],
)
def test_bad_block(ent, I, J, exc, match):
    with pytest.raises(exc, match=match):
        ent.block(I, J)


@pytest.mark.parametrize(
    "j, exc, match",
    [
        (N_SMALL, IndexError, rf"j: index {N_SMALL} is out of range for {N_SMALL} parameters"),
        (-1, IndexError, r"j: index -1 is out of range"),
        ([1, N_SMALL + 5], IndexError, rf"j: index {N_SMALL + 5} is out of range"),
        (1.0, TypeError, r"j must hold integer indices"),
        (True, TypeError, r"j must hold integer indices"),
    ],
)
def test_bad_column(ent, j, exc, match):
    with pytest.raises(exc, match=match):
        ent.column(j)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"eps": 0.0}, ValueError, r"eps must be > 0"),
        ({"eps": -0.1}, ValueError, r"eps must be > 0"),
        ({"eps": float("nan")}, ValueError, r"eps must be finite"),
        ({"eps": "0.1"}, TypeError, r"eps must be a real number"),
        ({"delta": 0.0}, ValueError, r"delta must be > 0"),
        ({"delta": 1.0}, ValueError, r"delta must be < 1"),
        ({"delta": 1.5}, ValueError, r"delta must be < 1"),
        ({"delta": -0.5}, ValueError, r"delta must be > 0"),
        ({"delta": None}, TypeError, r"delta must be a real number"),
        ({"seed": -1}, ValueError, r"seed must be at least 0"),
        ({"seed": 1.5}, TypeError, r"seed must be an integer"),
        ({"seed": True}, TypeError, r"seed must be an integer"),
    ],
)
def test_bad_estimate_arguments(ent, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ent.estimate([0, 1], [2, 3], **kwargs)
    if "seed" not in kwargs:  # the same checks for the sample count and the planner
        args = {"eps": 0.05, "delta": 0.01, **kwargs}
        with pytest.raises(exc, match=match):
            ent.num_samples(**args)
        with pytest.raises(exc, match=match):
            ent.will_sample(**args)


@pytest.mark.parametrize("method", ["bogus", None, 1])
def test_bad_sampling_method(ent, method):
    for call in (lambda: ent.num_samples(0.05, 0.01, method), lambda: ent.will_sample(0.05, 0.01, method),
                 lambda: ent.estimate([0], [1], method=method)):
        with pytest.raises(ValueError, match=r"method must be one of \('mean', 'median_of_means'\)"):
            call()


@pytest.mark.parametrize("eps", [1e-160, 1e-200, 1e-320])
def test_estimate_tiny_eps_falls_back_to_exact(ent, eps):
    """s = ⌈1/(δε²)⌉ overflows here; that is s ≥ n, so the exact entries come back (no OverflowError)."""
    rows, cols = np.array([0, 5, 20]), np.array([3, 5, 25])
    np.testing.assert_array_equal(ent.estimate(rows, cols, eps=eps, delta=0.5, seed=0), ent.entries(rows, cols))


# ---- results that would overflow, sampler sizes and seeds ------------------------------------------------


@pytest.mark.parametrize("method", ["forward", "loss", "grad", "linearize"])
def test_overflow_is_a_clear_error_not_a_silent_inf(method):
    net = hk.MLP([64, 2], loss="mse", backend="numpy")
    X, Y = np.full((2, 64), 1e308), np.zeros((2, 2))  # finite inputs whose products overflow
    theta = np.ones(net.num_params)
    args = (theta, X) if method == "forward" else (theta, X, Y)
    with pytest.raises(FloatingPointError, match="overflowed"):
        getattr(net, method)(*args)


@pytest.mark.parametrize("seed", [-1, 1.5, "a", True])
def test_init_seed_is_checked(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        hk.MLP([2, 1], backend="numpy").init(seed=seed)


def test_num_samples_saturates_instead_of_overflowing():
    assert hk.GnhEntries.num_samples(1e-200, 0.5) == 2**63 - 1
    assert hk.GnhEntries.num_samples(0.1, 0.1) == 1000


@pytest.mark.parametrize("method", ["mean", "median_of_means"])
def test_a_huge_eps_still_draws_one_sample(backend, method):
    # δ·ε² overflows to inf past ε ≈ 1e154: the plan must still draw at least once, never zero times (NaN)
    assert hk.GnhEntries.num_samples(1e200, 0.5, method) >= 1
    net = hk.MLP([3, 4, 10], loss="softmax_cross_entropy", backend=backend)
    theta = net.init(seed=0)
    rng = np.random.default_rng(0)
    e = net.linearize(theta, rng.standard_normal((50, 3)), rng.integers(0, 10, 50)).gnh_entries()
    got = e.estimate([0, 1], [2, 3], eps=1e200, delta=0.5, method=method, seed=0)
    assert np.all(np.isfinite(got))


def test_ragged_index_lists_name_the_argument():
    net, theta, X, Y = make()
    e = net.linearize(theta, X, Y).gnh_entries()
    with pytest.raises(ValueError, match="rows"):
        e.entries([[0, 1], [2]], [0, 1])


@pytest.mark.parametrize("fn", [hk.hvp, hk.gnvp])
def test_one_shot_products_name_a_net_that_is_not_an_mlp(fn):
    with pytest.raises(TypeError, match="net must be a pyhessk.MLP, got NoneType"):
        fn(None, np.zeros(3), np.zeros((2, 2)), np.zeros((2, 1)), np.zeros(3))
