"""pyhessk.jax against JAX's own autodiff: jax.hessian, jax.jvp(jax.grad) and the GGN Jᵀ H_out J from jax.jacrev,
on an MLP written with jax.nn in both weight layouts, in float64 (x64 mode) and float32."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy
hkj = pytest.importorskip("pyhessk.jax")
from jax.flatten_util import ravel_pytree  # noqa: E402

ACT = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu,
       "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01), "softplus": jax.nn.softplus,
       "gelu": lambda z: jax.nn.gelu(z, approximate=False), "silu": jax.nn.silu, "sin": jnp.sin, "identity": lambda z: z}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def init(sizes, layout, bias, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        shape = (i, o) if layout == "jax" else (o, i)
        W = jnp.asarray((rng.standard_normal(shape) / np.sqrt(i)).astype(dtype))
        b = jnp.asarray((0.1 * rng.standard_normal(o)).astype(dtype)) if bias else None
        params.append((W, b))
    return params


def apply(params, X, acts, layout):
    a = X
    for l, (W, b) in enumerate(params):
        z = a @ W if layout == "jax" else a @ W.T
        z = z if b is None else z + b
        a = ACT[acts[l]](z) if l < len(params) - 1 else z
    return a


def data_term(F, Y, loss, reduction):
    if loss == "mse":
        per = 0.5 * jnp.sum((F - Y) ** 2, axis=1)
    elif loss == "cross_entropy":
        logp = jax.nn.log_softmax(F, axis=1)
        per = -jnp.take_along_axis(logp, Y[:, None], axis=1)[:, 0]
    else:
        per = jnp.sum(jax.nn.softplus(F) - Y * F, axis=1)
    return jnp.mean(per) if reduction == "mean" else jnp.sum(per)


CASES = [
    dict(sizes=[3, 5, 2], acts=["tanh"], loss="mse", layout="jax", bias=True, l2=0.0, reduction="mean"),
    dict(sizes=[4, 5, 4, 3], acts=["gelu", "silu"], loss="cross_entropy", layout="jax", bias=True, l2=0.1,
         reduction="sum"),
    dict(sizes=[3, 4, 4, 2], acts=["sin", "softplus"], loss="binary_cross_entropy", layout="torch", bias=False,
         l2=0.05, reduction="mean"),
    dict(sizes=[3, 6, 3], acts=["leaky_relu"], loss="cross_entropy", layout="torch", bias=True, l2=0.0,
         reduction="mean"),
]
IDS = [f"{c['layout']}-{'-'.join(c['acts'])}-{c['loss']}" for c in CASES]


def problem(case, dtype, n=6, seed=1):
    params = init(case["sizes"], case["layout"], case["bias"], dtype)
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.standard_normal((n, case["sizes"][0])).astype(dtype))
    d = case["sizes"][-1]
    if case["loss"] == "mse":
        Y = jnp.asarray(rng.standard_normal((n, d)).astype(dtype))
    elif case["loss"] == "cross_entropy":
        Y = jnp.asarray(rng.integers(0, d, n))
    else:
        Y = jnp.asarray(rng.random((n, d)).astype(dtype))
    flat, unravel = ravel_pytree(params)

    def objective(p):
        tree = unravel(p)
        reg = 0.5 * case["l2"] * sum(jnp.sum(W ** 2) for W, _ in tree)
        return data_term(apply(tree, X, case["acts"], case["layout"]), Y, case["loss"], case["reduction"]) + reg

    def output(p):
        return apply(unravel(p), X, case["acts"], case["layout"])

    return params, X, Y, flat, objective, output


def spec_order(params, layout):
    """perm with v_spec = v_ravel[perm]: ravel_pytree's order (each leaf row-major as stored) to SPEC's layout."""
    perm, pos = [], 0
    for W, b in params:
        idx = pos + np.arange(W.size).reshape(W.shape)
        perm.append((idx.T if layout == "jax" else idx).ravel())
        pos += W.size
        if b is not None:
            perm.append(pos + np.arange(b.size))
            pos += b.size
    return np.concatenate(perm)


def autodiff(case, flat, objective, output, Y, v):
    """JAX's answers in one jitted call: loss, jax.grad, jax.hessian, jax.jvp(jax.grad) (forward-over-reverse),
    jax.jacrev of the outputs, and the loss's Hessian in the outputs; as NumPy arrays in ravel_pytree order."""

    def run(t, v):
        F = output(t)
        Hout = jax.hessian(lambda f: data_term(f, Y, case["loss"], case["reduction"]))(F)
        return (objective(t), jax.grad(objective)(t), jax.hessian(objective)(t),
                jax.jvp(jax.grad(objective), (t,), (v,))[1], jax.jacrev(output)(t), F, Hout)

    return [np.asarray(a, dtype=np.float64) for a in jax.jit(run)(flat, v)]


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_jax_autodiff_float64(case, x64):
    params, X, Y, flat, objective, output = problem(case, jnp.float64)
    net, theta = hkj.from_params(params, case["acts"], case["loss"], layout=case["layout"], l2=case["l2"],
                                 reduction=case["reduction"])
    perm = spec_order(params, case["layout"])
    assert theta.dtype == jnp.float64 and np.array_equal(np.asarray(theta), np.asarray(flat)[perm])
    N = theta.size
    V = np.random.default_rng(2).standard_normal((N, 3))
    inv = np.argsort(perm)  # v_ravel = v_spec[inv]
    loss, g, H, hv, J, F, Hout = autodiff(case, flat, objective, output, Y, jnp.asarray(V[inv, 0]))
    H = H[np.ix_(perm, perm)]
    J = J[..., perm]  # (n, d, N)
    n, d = F.shape
    Jf = J.reshape(n * d, N)
    w_mask = np.concatenate([np.r_[np.ones(W.size), np.zeros(0 if b is None else b.size)] for W, b in params])[perm]
    G = Jf.T @ Hout.reshape(n * d, n * d) @ Jf + case["l2"] * np.diag(w_mask)

    c = net.linearize(theta, X, Y)
    assert abs(c.loss - loss) < 1e-12 * max(1.0, abs(loss))
    assert rel(c.grad, g[perm]) < 1e-12
    HV = c.hvp(jnp.asarray(V))
    assert isinstance(HV, jax.Array) and HV.shape == (N, 3) and HV.dtype == jnp.float64
    assert rel(HV, H @ V) < 1e-11
    assert rel(c.hvp(jnp.asarray(V[:, 0])), hv[perm]) < 1e-11
    assert rel(c.gnvp(jnp.asarray(V)), G @ V) < 1e-11
    assert rel(c.hessian(), H) < 1e-11 and rel(c.gnh(), G) < 1e-11
    assert rel(c.gnh_diagonal(), np.diag(G)) < 1e-11
    assert rel(c.jvp(jnp.asarray(V)), np.einsum("kdp,pj->kdj", J, V)) < 1e-12
    U = np.random.default_rng(3).standard_normal((n, d))
    assert rel(c.vjp(jnp.asarray(U)), np.einsum("kdp,kd->p", J, U)) < 1e-12
    assert rel(net.forward(theta, X), F) < 1e-13
    assert rel(net.gnvp(theta, X, Y, jnp.asarray(V)), G @ V) < 1e-11


@pytest.mark.parametrize("case", CASES[::2], ids=IDS[::2])
def test_float32(case):
    params, X, Y, flat, objective, output = problem(case, jnp.float32)
    net, theta = hkj.from_params(params, case["acts"], case["loss"], layout=case["layout"], l2=case["l2"],
                                 reduction=case["reduction"])
    assert theta.dtype == jnp.float32
    perm = spec_order(params, case["layout"])
    V = np.random.default_rng(4).standard_normal((theta.size, 4)).astype(np.float32)
    c = net.linearize(theta, X, Y)
    HV, GV = c.hvp(jnp.asarray(V)), c.gnvp(jnp.asarray(V))
    assert HV.dtype == GV.dtype == c.grad.dtype == jnp.float32
    with jax.enable_x64(True):  # pyhessk in float64 at the same point
        p64 = [(W.astype(jnp.float64), None if b is None else b.astype(jnp.float64)) for W, b in params]
        net64, t64 = hkj.from_params(p64, case["acts"], case["loss"], layout=case["layout"], l2=case["l2"],
                                     reduction=case["reduction"])
        c64 = net64.linearize(t64, X.astype(jnp.float64), Y.astype(jnp.float64) if Y.dtype.kind == "f" else Y)
        V64 = jnp.asarray(V.astype(np.float64))
        assert rel(HV, c64.hvp(V64)) < 1e-4 and rel(GV, c64.gnvp(V64)) < 1e-4
    # and JAX's own float32 forward-over-reverse product
    hv32 = jax.jit(lambda t, v: jax.jvp(jax.grad(objective), (t,), (v,))[1])(flat, jnp.asarray(V[np.argsort(perm), 0]))
    assert rel(c.hvp(jnp.asarray(V[:, 0])), np.asarray(hv32)[perm]) < 1e-4


def test_pytree_vectors_and_round_trip(x64):
    case = CASES[1]
    params, X, Y, *_ = problem(case, jnp.float64)
    net, theta = hkj.from_params(params, case["acts"], case["loss"], layout="jax", l2=case["l2"], reduction="sum")
    back = hkj.to_params(net, theta)
    assert all(jnp.array_equal(W, W0) and jnp.array_equal(b, b0) for (W, b), (W0, b0) in zip(back, params))
    c = net.linearize(theta, X, Y)
    k = 3
    V = jnp.asarray(np.random.default_rng(5).standard_normal((theta.size, k)))
    tree = net.unflatten(V)
    assert [(W.shape, b.shape) for W, b in tree] == [((i, o, k), (o, k)) for i, o in zip(case["sizes"][:-1],
                                                                                       case["sizes"][1:])]
    out = c.hvp(tree)
    assert rel(net.flatten(out), c.hvp(V)) < 1e-14
    one = c.gnvp(net.unflatten(V[:, 0]))
    assert rel(net.flatten(one), c.gnvp(V[:, 0])) < 1e-14
    # the torch layout gives the same θ for transposed weights
    net_t, theta_t = hkj.from_params([(W.T, b) for W, b in params], case["acts"], case["loss"], layout="torch")
    assert jnp.array_equal(theta_t, theta)


def test_numpy_inputs_and_no_mutation(x64):
    case = CASES[0]
    params, X, Y, *_ = problem(case, jnp.float64)
    net, theta = hkj.from_params(params)
    Xn, Yn, tn = np.array(X), np.array(Y), np.array(theta)
    copies = [a.copy() for a in (Xn, Yn, tn)]
    assert rel(net.grad(tn, Xn, Yn), net.grad(theta, X, Y)) == 0.0
    assert all(np.array_equal(a, b) for a, b in zip((Xn, Yn, tn), copies))


def test_float64_pytrees_need_x64():
    """With x64 off, float64 pytrees and flat vectors raise instead of being rounded to float32 by jnp.asarray."""
    params = init([3, 4, 2], "jax", True, jnp.float32)
    net, theta = hkj.from_params(params)
    c = net.linearize(theta, jnp.ones((5, 3)), jnp.zeros((5, 2)))
    tree64 = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]
    v64 = np.asarray(theta, np.float64)
    with pytest.raises(TypeError, match=r"params are float64, but JAX's x64 mode is off"):
        net.flatten(tree64)
    with pytest.raises(TypeError, match=r"v is float64, but JAX's x64 mode is off"):
        net.unflatten(v64)
    with pytest.raises(TypeError, match=r"theta is float64, but JAX's x64 mode is off"):
        hkj.to_params(net, v64)
    with pytest.raises(TypeError, match="x64 mode is off"):
        c.hvp(tree64)
    with pytest.raises(TypeError, match=r"\[0\]: W has dtype int32"):
        net.flatten([(W.astype(jnp.int32), b) for W, b in params])
    with pytest.raises(TypeError, match=r"mixed float32/float64 \(params\[0\]: W is float32, params\[0\]: b is"):
        net.flatten([(W, np.asarray(b, np.float64)) for W, b in params])
    with jax.enable_x64(True):
        net64, theta64 = hkj.from_params(tree64)
        assert theta64.dtype == jnp.float64 and rel(theta64, v64) == 0.0
        assert all(w.dtype == jnp.float64 for w, _ in net64.unflatten(v64))
        with pytest.raises(TypeError, match="mixed float32/float64"):
            net64.flatten([tree64[0], params[1]])


def test_traced_values_are_refused_by_name():
    params = init([3, 4, 2], "jax", True, jnp.float32)
    net, theta = hkj.from_params(params)
    X, Y = jnp.ones((5, 3)), jnp.zeros((5, 2))
    c = net.linearize(theta, X, Y)
    V = jnp.ones(net.num_params)
    with pytest.raises(TypeError, match=r"^theta is a traced JAX value \(inside jax.jit"):
        jax.jit(lambda t: net.forward(t, X))(theta)
    with pytest.raises(TypeError, match="^X is a traced JAX value"):
        jax.vmap(lambda x: net.forward(theta, x[None]))(X)
    with pytest.raises(TypeError, match="^V is a traced JAX value"):
        jax.grad(lambda v: c.hvp(v).sum())(V)
    with pytest.raises(TypeError, match="^V is a traced JAX value"):
        jax.jit(c.gnvp)(net.unflatten(V))
    # the way the message points to: a callback on concrete arrays
    hvp = jax.jit(lambda v: jax.pure_callback(lambda u: np.asarray(c.hvp(u)), jax.ShapeDtypeStruct(v.shape, v.dtype), v))
    assert rel(hvp(V), c.hvp(V)) == 0.0


def test_errors():
    params = init([3, 4, 2], "jax", True, jnp.float32)
    with pytest.raises(ValueError, match="layout must be one of"):
        hkj.from_params(params, layout="flax")
    with pytest.raises(ValueError, match=r"params\[1\]: W must have shape \(4, n_out\)"):
        hkj.from_params([params[0], (params[1][0].T, params[1][1])])
    with pytest.raises(ValueError, match="either every layer has a bias"):
        hkj.from_params([params[0], (params[1][0], None)])
    with pytest.raises(TypeError, match="must be a non-empty list of"):
        hkj.from_params(params[0][0])
    with pytest.raises(TypeError, match=r"params\[0\] must be a \(W, b\) pair"):
        hkj.from_params([params[0][0], params[1]])
    with pytest.raises(ValueError, match="loss: unknown loss 'hinge'"):
        hkj.from_params(params, loss="hinge")
    with pytest.raises(ValueError, match="activation: unknown activation 'elu'"):
        hkj.from_params(params, activation="elu")
    with pytest.raises(TypeError, match="float16"):
        hkj.from_params([(W.astype(jnp.float16), b.astype(jnp.float16)) for W, b in params])
    with pytest.raises(TypeError, match="x64 mode is off"):
        hkj.from_params([(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params])
    with pytest.raises(ValueError, match="loss_scale must be > 0"):
        hkj.from_params(params, loss_scale=0.0)
    net, theta = hkj.from_params(params)
    X, Y = jnp.ones((5, 3)), jnp.zeros((5, 2))
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        net.forward(theta, X[:, :2])
    c = net.linearize(theta, X, Y)
    with pytest.raises(ValueError, match=r"V must have shape \(26,\) or \(26, k\)"):
        c.hvp(jnp.ones(25))
    with pytest.raises(ValueError, match=r"^V\[0\]: W must have shape \(3, 4\)"):
        c.gnvp([(jnp.ones((4, 3)), jnp.ones(4)), (jnp.ones((4, 2)), jnp.ones(2))])
    with pytest.raises(ValueError, match=r"^V\[1\]: b must have shape \(2,\)"):
        c.hvp([(jnp.ones((3, 4)), jnp.ones(4)), (jnp.ones((4, 2)),)])
    with pytest.raises(ValueError, match="^V must hold 2"):
        c.gnvp([(jnp.ones((3, 4)), jnp.ones(4))])
    with pytest.raises(TypeError, match="mixed float32/float64"):
        c.hvp(np.ones(26))  # a float64 NumPy vector against float32 θ: an error, never a silent cast
    with pytest.raises(TypeError, match="x64 mode is off"):
        net.forward(np.asarray(theta, np.float64), np.ones((5, 3)))
    with pytest.raises(TypeError, match="net must be a pyhessk.jax.JaxMLP"):
        hkj.to_params(object(), theta)
