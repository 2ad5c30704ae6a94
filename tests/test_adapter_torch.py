"""pyhessk.torch against PyTorch's own autodiff: torch.func.hessian, jvp(grad) and the GGN Jᵀ H_out J built from
torch.func.jacrev, on the objective written with torch's modules and loss modules, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
hkt = pytest.importorskip("pyhessk.torch")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def make_model(widths, acts, bias=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    mods = []
    for l, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(i, o, bias=bias, dtype=dtype))
        if l < len(acts) and acts[l] is not None:
            mods.append(acts[l])
    return nn.Sequential(*mods)


def torch_oracle(model, loss_fn, X, Y, l2=0.0):
    """(objective, outputs, H_out per sample, θ) as functions of the flat θ, with torch's own modules."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def params(t):
        out, pos = {}, 0
        for k, s in zip(names, shapes):
            size = int(np.prod(s))
            out[k] = t[pos:pos + size].reshape(s)
            pos += size
        return out

    def output(t):
        return torch.func.functional_call(model, params(t), (X,))

    def objective(t):
        p = params(t)
        reg = sum((w ** 2).sum() for k, w in p.items() if k.endswith("weight"))
        return loss_fn(output(t), Y) + 0.5 * l2 * reg

    return objective, output, theta


def torch_ggn(loss_fn, output, theta, Y, l2, weight_mask):
    J = torch.func.jacrev(output)(theta)  # (n, d, N)
    f = output(theta).detach()
    Hout = torch.func.hessian(lambda g: loss_fn(g, Y))(f)  # (n, d, n, d)
    n, d = f.shape
    Jf = J.reshape(n * d, -1)
    return Jf.T @ Hout.reshape(n * d, n * d) @ Jf + l2 * torch.diag(weight_mask)


def mask(model):
    return torch.cat([torch.full((p.numel(),), 1.0 if k.endswith("weight") else 0.0, dtype=p.dtype)
                      for k, p in model.named_parameters()])


def rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


CASES = {
    "tanh-MSELoss-mean": (lambda: [nn.Tanh()], [3, 5, 2], lambda: nn.MSELoss(), "real", True, 0.0),
    "gelu-silu-MSELoss-sum-l2": (lambda: [nn.GELU(), nn.SiLU()], [3, 4, 4, 3], lambda: nn.MSELoss(reduction="sum"),
                                 "real", True, 0.1),
    "sigmoid-CrossEntropy": (lambda: [nn.Sigmoid()], [4, 5, 3], lambda: nn.CrossEntropyLoss(), "labels", True, 0.0),
    "softplus-CE-sum-probs": (lambda: [nn.Softplus()], [3, 4, 3], lambda: nn.CrossEntropyLoss(reduction="sum"),
                              "probabilities", True, 0.05),
    "sin-BCEWithLogits-nobias": (lambda: [hkt.Sin()], [3, 4, 2], lambda: nn.BCEWithLogitsLoss(), "unit", False, 0.0),
    "leaky-identity-BCE-sum": (lambda: [nn.LeakyReLU(0.01), None], [3, 5, 4, 2],
                               lambda: nn.BCEWithLogitsLoss(reduction="sum"), "unit", True, 0.0),
    "relu-MSELoss-mean": (lambda: [nn.ReLU()], [3, 6, 4], lambda: nn.MSELoss(), "real", True, 0.0),
}


def data(widths, kind, n=6, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, widths[0], generator=g, dtype=dtype)
    d = widths[-1]
    if kind == "real":
        Y = torch.randn(n, d, generator=g, dtype=dtype)
    elif kind == "labels":
        Y = torch.randint(0, d, (n,), generator=g)
    elif kind == "probabilities":
        P = torch.rand(n, d, generator=g, dtype=dtype)
        Y = P / P.sum(1, keepdim=True)
    else:
        Y = torch.rand(n, d, generator=g, dtype=dtype)
    return X, Y


@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_func_float64(name):
    acts, widths, loss, kind, bias, l2 = CASES[name]
    model = make_model(widths, acts(), bias)
    X, Y = data(widths, kind)
    loss_fn = loss()
    objective, output, theta0 = torch_oracle(model, loss_fn, X, Y, l2)
    net, theta = hkt.from_sequential(model, loss_fn, l2=l2, backend="numpy" if "relu" in name else "auto")
    assert torch.equal(theta, theta0) and theta.dtype == torch.float64
    c = net.linearize(theta, X, Y)

    H = torch.func.hessian(objective)(theta0)
    G = torch_ggn(loss_fn, output, theta0, Y, l2, mask(model))
    N = theta.numel()
    V = torch.randn(N, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert abs(c.loss - float(objective(theta0))) < 1e-12 * max(1.0, abs(c.loss))
    assert rel(c.grad, torch.func.grad(objective)(theta0)) < 1e-12
    HV = c.hvp(V)
    assert isinstance(HV, torch.Tensor) and HV.shape == (N, 3) and HV.dtype == torch.float64
    assert rel(HV, H @ V) < 1e-11
    if isinstance(loss_fn, nn.MSELoss):  # forward mode through MSELoss's backward fails in torch 2.13 (ZeroTensor)
        hv_ad = torch.func.vjp(torch.func.grad(objective), theta0)[1](V[:, 0])[0]  # reverse-over-reverse
    else:
        hv_ad = torch.func.jvp(torch.func.grad(objective), (theta0,), (V[:, 0],))[1]  # forward-over-reverse
    assert rel(c.hvp(V[:, 0]), hv_ad) < 1e-11
    assert rel(c.gnvp(V), G @ V) < 1e-11
    assert rel(c.hessian(), H) < 1e-11
    assert rel(c.gnh(), G) < 1e-11
    assert rel(c.gnh_diagonal(), torch.diagonal(G)) < 1e-11
    J = torch.func.jacrev(output)(theta0)
    assert rel(c.jvp(V), torch.einsum("kdp,pj->kdj", J, V)) < 1e-12
    U = torch.randn(X.shape[0], widths[-1], dtype=torch.float64)
    assert rel(c.vjp(U), torch.einsum("kdp,kd->p", J, U)) < 1e-12
    assert rel(net.forward(theta, X), model(X).detach()) < 1e-13
    assert rel(net.hvp(theta, X, Y, V), HV) < 1e-13 and rel(net.gnvp(theta, X, Y, V), G @ V) < 1e-11


@pytest.mark.parametrize("name", ["tanh-MSELoss-mean", "sigmoid-CrossEntropy", "sin-BCEWithLogits-nobias"])
def test_float32_against_torch_float32(name):
    acts, widths, loss, kind, bias, l2 = CASES[name]
    model = make_model(widths, acts(), bias, dtype=torch.float32)
    X, Y = data(widths, kind, dtype=torch.float32)
    loss_fn = loss()
    net, theta = hkt.from_sequential(model, loss_fn, l2=l2)
    assert theta.dtype == torch.float32
    objective, output, theta0 = torch_oracle(model.double(), loss_fn, X.double(), Y.double() if kind != "labels" else Y, l2)
    V = torch.randn(theta.numel(), 4, generator=torch.Generator().manual_seed(3))
    c = net.linearize(theta, X, Y)
    HV, GV = c.hvp(V), c.gnvp(V)
    assert HV.dtype == GV.dtype == c.grad.dtype == torch.float32
    H = torch.func.hessian(objective)(theta0)
    G = torch_ggn(loss_fn, output, theta0, Y.double() if kind != "labels" else Y, l2, mask(model))
    assert rel(HV, H @ V.double()) < 1e-4
    assert rel(GV, G @ V.double()) < 1e-4


def test_mse_conventions_spec_name_versus_torch_module():
    """SPEC's "mse" is (1/n)Σ½‖f−y‖²; torch's MSELoss() is (1/(n·d))Σ‖f−y‖², 2/d times it; "sum" is 2 times."""
    widths = [3, 4, 5]
    model = make_model(widths, [nn.Tanh()])
    X, Y = data(widths, "real")
    n, d = Y.shape
    net_spec, theta = hkt.from_sequential(model, "mse")
    net_mean, _ = hkt.from_sequential(model, nn.MSELoss())
    net_sum, _ = hkt.from_sequential(model, nn.MSELoss(reduction="sum"))
    assert (net_spec.loss_scale, net_mean.loss_scale, net_sum.loss_scale) == (1.0, 2.0 / d, 2.0)
    f = model(X).detach()
    assert abs(net_spec.loss(theta, X, Y) - float(0.5 * ((f - Y) ** 2).sum() / n)) < 1e-13
    assert abs(net_mean.loss(theta, X, Y) - float(nn.MSELoss()(f, Y))) < 1e-13
    V = torch.randn(theta.numel(), dtype=torch.float64)
    h_spec = net_spec.linearize(theta, X, Y).hvp(V)
    assert rel(net_mean.linearize(theta, X, Y).hvp(V), 2.0 / d * h_spec) < 1e-14
    # BCEWithLogitsLoss(mean) averages over n·d entries: 1/d times SPEC's per-sample sum over outputs
    net_b, _ = hkt.from_sequential(model, nn.BCEWithLogitsLoss())
    assert net_b.loss_scale == 1.0 / d
    # l2 keeps SPEC's meaning under the factor: (λ/2)Σ‖W‖² is added to torch's loss unscaled
    net_l2, _ = hkt.from_sequential(model, nn.MSELoss(), l2=0.3)
    reg = 0.15 * sum(float((p.detach() ** 2).sum()) for k, p in model.named_parameters() if k.endswith("weight"))
    assert abs(net_l2.loss(theta, X, Y) - net_mean.loss(theta, X, Y) - reg) < 1e-12


def test_round_trip_and_activation_modules():
    model = make_model([3, 4, 4, 4, 4, 4, 4, 4, 4, 2],
                       [nn.Tanh(), nn.Sigmoid(), nn.ReLU(), nn.LeakyReLU(), nn.Softplus(), nn.GELU(), nn.SiLU(),
                        hkt.Sin()])
    net, theta = hkt.from_sequential(model, "cross_entropy")
    assert net.mlp.activations == ["tanh", "sigmoid", "relu", "leaky_relu", "softplus", "gelu", "silu", "sin"]
    back = hkt.to_sequential(net, theta)
    X = torch.randn(5, 3, dtype=torch.float64)
    assert torch.equal(back(X), model(X))
    net2, theta2 = hkt.from_sequential(back, "cross_entropy")
    assert torch.equal(theta2, theta) and net2.mlp.activations == net.mlp.activations
    # from a pyhessk.MLP and a NumPy θ, and nested Sequentials and the identity between Linear layers
    import pyhessk as hk

    mlp = hk.MLP([2, 3, 3, 1], activation=["identity", "silu"], bias=False)
    th = mlp.init(seed=1, dtype="float32")
    m = hkt.to_sequential(mlp, th)
    assert m[0].weight.dtype == torch.float32 and m[0].bias is None
    nested = nn.Sequential(nn.Sequential(m[0], m[1]), nn.Sequential(m[2], m[3], m[4]))
    net3, th3 = hkt.from_sequential(nested)
    assert net3.mlp.activations == ["identity", "silu"] and np.array_equal(th3.numpy(), th)
    direct = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    assert hkt.from_sequential(direct)[0].mlp.activations == ["identity"]


def test_a_module_placed_twice():
    # one activation instance at two positions acts at both, also across nested Sequentials
    act = nn.Tanh()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), act, nn.Linear(5, 5), act, nn.Sequential(nn.Linear(5, 5), act),
                          nn.Linear(5, 2)).double()
    X, Y = data([3, 5, 5, 5, 2], "real")
    net, theta = hkt.from_sequential(model, nn.MSELoss())
    assert net.mlp.activations == ["tanh", "tanh", "tanh"]
    assert rel(net.forward(theta, X), model(X).detach()) < 1e-14
    objective, _, theta0 = torch_oracle(model, nn.MSELoss(), X, Y)
    V = torch.randn(theta.numel(), 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert rel(net.linearize(theta, X, Y).hvp(V), torch.func.hessian(objective)(theta0) @ V) < 1e-12
    # one Linear at two positions is a weight-tied network, which pyhessk's layers cannot express
    lin = nn.Linear(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"model\[2\]: the nn.Linear of model\[0\] is used again here \(tied"):
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), lin))
    block = nn.Sequential(nn.Linear(4, 4, dtype=torch.float64), nn.Tanh())
    tied = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.Tanh(), block, block,
                         nn.Linear(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"model\[3\.0\]: the nn.Linear of model\[2\.0\] is used again"):
        hkt.from_sequential(tied)


def test_only_plain_linear_parameters():
    """θ is read from the weight and bias of each Linear, and only where they are what its forward uses."""
    import warnings

    from torch.nn.utils import prune

    def model():
        return make_model([3, 4, 2], [nn.Tanh()])

    pruned = model()
    prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"model\[0\]: the Linear is pruned .*prune.remove\(module, 'weight'\)"):
        hkt.from_sequential(pruned)
    prune.remove(pruned[0], "weight")  # permanent, but the weight is registered again after the bias
    with pytest.raises(ValueError, match=r"model\[0\]: the Linear's parameters are registered as \['bias', 'weight'\]"):
        hkt.from_sequential(pruned)
    b = pruned[0].bias
    del pruned[0].bias
    pruned[0].bias = b
    X, Y = data([3, 4, 2], "real")
    net, theta = hkt.from_sequential(pruned, nn.MSELoss())
    objective, _, theta0 = torch_oracle(pruned, nn.MSELoss(), X, Y)
    assert torch.equal(theta, theta0) and int((theta[:12] == 0).sum()) == 6
    assert rel(net.forward(theta, X), pruned(X).detach()) < 1e-14
    V = torch.randn(theta.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    assert rel(net.linearize(theta, X, Y).hvp(V), torch.func.hessian(objective)(theta0) @ V) < 1e-12

    old_norm = model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch deprecates it in favour of parametrizations
        nn.utils.weight_norm(old_norm[2])
    with pytest.raises(ValueError, match=r"model\[2\]: the Linear has torch.nn.utils.weight_norm"):
        hkt.from_sequential(old_norm)
    new_norm = model()
    nn.utils.parametrizations.weight_norm(new_norm[0])
    with pytest.raises(ValueError, match=r"model\[0\]: ParametrizedLinear has parametrizations of \['weight'\]"):
        hkt.from_sequential(new_norm)
    computed = model()
    w = computed[2].weight.detach().clone()
    del computed[2].weight
    computed[2].weight = w
    with pytest.raises(ValueError, match=r"model\[2\]: the Linear's weight is not one of its parameters"):
        hkt.from_sequential(computed)
    extra = model()
    extra.register_parameter("scale", nn.Parameter(torch.ones(1, dtype=torch.float64)))
    with pytest.raises(ValueError, match=r"the parameters \['scale'\] belong to no Linear layer"):
        hkt.from_sequential(extra)
    shared = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4)).double()
    shared[4].weight = shared[2].weight
    with pytest.raises(ValueError, match=r"model\[4\]: its weight is the same Parameter as the weight of model\[2\]"):
        hkt.from_sequential(shared)


def test_tensors_cross_without_copies_and_inputs_are_untouched():
    model = make_model([3, 4, 2], [nn.Tanh()])
    X, Y = data([3, 4, 2], "real")
    net, theta = hkt.from_sequential(model, nn.MSELoss())
    from pyhessk.torch import _from_engine, _to_engine

    assert _to_engine(theta, "theta").ctypes.data == theta.data_ptr()
    a = np.ones(3)
    assert _from_engine(a).data_ptr() == a.ctypes.data
    V = torch.randn(theta.numel(), 2, dtype=torch.float64)
    copies = [t.clone() for t in (theta, X, Y, V)]
    c = net.linearize(theta, X, Y)
    c.hvp(V), c.gnvp(V), c.jvp(V)
    assert all(torch.equal(a, b) for a, b in zip((theta, X, Y, V), copies))
    # a parameter tensor that requires grad works (detached, never modified)
    p = model[0].weight
    assert p.requires_grad and net.forward(theta.requires_grad_(True), X).shape == (6, 2)


def test_per_parameter_list_vectors():
    model = make_model([3, 4, 2], [nn.Tanh()])
    X, Y = data([3, 4, 2], "real")
    net, theta = hkt.from_sequential(model, nn.MSELoss())
    c = net.linearize(theta, X, Y)
    V = torch.randn(theta.numel(), 3, dtype=torch.float64)
    parts = [V[a:b].reshape(*p.shape, 3) for (a, b), p in zip(_bounds(model), model.parameters())]
    out = c.hvp(parts)
    assert [o.shape for o in out] == [(*p.shape, 3) for p in model.parameters()]
    assert torch.allclose(torch.cat([o.reshape(-1, 3) for o in out]), c.hvp(V), rtol=1e-13, atol=0)
    one = c.gnvp([q[..., 0] for q in parts])
    assert torch.allclose(torch.cat([o.reshape(-1) for o in one]), c.gnvp(V[:, 0]), rtol=1e-13, atol=0)


def _bounds(model):
    out, pos = [], 0
    for p in model.parameters():
        out.append((pos, pos + p.numel()))
        pos += p.numel()
    return out


@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_linear_operators_like_curvlinops(kind):
    widths = [3, 5, 3]
    model = make_model(widths, [nn.Tanh()])
    loss_fn = nn.CrossEntropyLoss()
    X1, Y1 = data(widths, "labels", n=5, seed=1)
    X2, Y2 = data(widths, "labels", n=3, seed=2)
    params = list(model.parameters())
    cls = hkt.HessianLinearOperator if kind == "hessian" else hkt.GGNLinearOperator
    op = cls(model, loss_fn, params, [(X1, Y1), (X2, Y2)])
    X, Y = torch.cat([X1, X2]), torch.cat([Y1, Y2])
    objective, output, theta = torch_oracle(model, loss_fn, X, Y)
    M = torch.func.hessian(objective)(theta) if kind == "hessian" else torch_ggn(loss_fn, output, theta, Y, 0.0, mask(model))
    N = theta.numel()
    assert op.shape == (N, N) and op.dtype == torch.float64 and op.SELF_ADJOINT and op.adjoint() is op
    V = torch.randn(N, 4, dtype=torch.float64)
    assert rel(op @ V, M @ V) < 1e-11 and rel(op @ V[:, 1], M @ V[:, 1]) < 1e-11
    as_list = op @ [v.unsqueeze(-1).expand(*v.shape, 2).clone() for v in _split(V[:, 0], model)]
    assert rel(as_list[0][..., 1], (M @ V[:, 0])[: params[0].numel()].reshape(params[0].shape)) < 1e-11
    dense = op.to_scipy() @ np.eye(N)
    assert rel(torch.from_numpy(dense), M) < 1e-11
    grads, loss = op.gradient_and_loss()
    assert abs(float(loss) - float(objective(theta))) < 1e-12
    assert rel(torch.cat([g.reshape(-1) for g in grads]), torch.func.grad(objective)(theta)) < 1e-12
    op1 = cls(model, loss_fn, None, (X, Y))
    assert rel(op1 @ V, op @ V) < 1e-13


def _split(v, model):
    return [v[a:b].reshape(p.shape) for (a, b), p in zip(_bounds(model), model.parameters())]


def test_errors():
    lin = nn.Linear(3, 4, dtype=torch.float64)
    out = nn.Linear(4, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="model must be a torch.nn.Sequential"):
        hkt.from_sequential(lin)
    with pytest.raises(TypeError, match="unsupported module ELU"):
        hkt.from_sequential(nn.Sequential(lin, nn.ELU(), out))
    with pytest.raises(TypeError, match="unsupported module Dropout"):
        hkt.from_sequential(nn.Sequential(lin, nn.Dropout(), out))
    with pytest.raises(ValueError, match=r"LeakyReLU\(negative_slope=0.2\) is not supported"):
        hkt.from_sequential(nn.Sequential(lin, nn.LeakyReLU(0.2), out))
    with pytest.raises(ValueError, match="GELU"):
        hkt.from_sequential(nn.Sequential(lin, nn.GELU(approximate="tanh"), out))
    with pytest.raises(ValueError, match="Softplus"):
        hkt.from_sequential(nn.Sequential(lin, nn.Softplus(beta=2.0), out))
    with pytest.raises(ValueError, match=r"model\[3\]: the last module must be nn.Linear, got Sigmoid \(") as err:
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), out, nn.Sigmoid()))
    assert "{" not in str(err.value)
    with pytest.raises(ValueError, match="the first module must be nn.Linear"):
        hkt.from_sequential(nn.Sequential(nn.Tanh(), lin, nn.Tanh(), out))
    with pytest.raises(ValueError, match="one activation module between two Linear layers"):
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), nn.Tanh(), out))
    with pytest.raises(ValueError, match="every Linear layer has a bias or none"):
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2, bias=False, dtype=torch.float64)))
    with pytest.raises(TypeError, match="all parameters must share one dtype"):
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2)))
    with pytest.raises(TypeError, match="torch.float32 or torch.float64"):
        hkt.from_sequential(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).half())
    with pytest.raises(ValueError, match="does not follow a layer of width 4"):
        hkt.from_sequential(nn.Sequential(lin, nn.Tanh(), nn.Linear(5, 2, dtype=torch.float64)))
    model = nn.Sequential(lin, nn.Tanh(), out)
    with pytest.raises(ValueError, match="loss: unknown loss 'hinge'"):
        hkt.from_sequential(model, "hinge")
    with pytest.raises(TypeError, match="unsupported loss module L1Loss"):
        hkt.from_sequential(model, nn.L1Loss())
    with pytest.raises(ValueError, match="reduction='none'"):
        hkt.from_sequential(model, nn.MSELoss(reduction="none"))
    with pytest.raises(ValueError, match="disagrees"):
        hkt.from_sequential(model, nn.MSELoss(), reduction="sum")
    with pytest.raises(ValueError, match="class weights"):
        hkt.from_sequential(model, nn.CrossEntropyLoss(weight=torch.ones(2, dtype=torch.float64)))
    with pytest.raises(TypeError, match="loss must be a pyhessk loss name"):
        hkt.from_sequential(model, 3)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        hkt.from_sequential(model, nn.MSELoss(), l2=-1.0)
    net, theta = hkt.from_sequential(model)
    X, Y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match="X has dtype torch.float16"):
        net.linearize(theta, X.half(), Y)
    with pytest.raises(TypeError, match="X has dtype float32 but theta is float64"):
        net.linearize(theta, X.float(), Y)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 3\)"):
        net.forward(theta, X[:, :2])
    c = net.linearize(theta, X, Y)
    with pytest.raises(ValueError, match=r"V must have shape \(26,\) or \(26, k\)"):
        c.hvp(torch.ones(25, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"V\[0\] must have shape \(4, 3\)"):
        c.hvp([torch.ones(3, 4, dtype=torch.float64)] * 4)
    with pytest.raises(ValueError, match="needs 4 entries"):
        c.gnvp([torch.ones(4, 3, dtype=torch.float64)])
    with pytest.raises(TypeError, match="is on device meta"):
        c.hvp(torch.ones(26, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match=r"params must be list\(model_func.parameters\(\)\)"):
        hkt.HessianLinearOperator(model, nn.MSELoss(), [lin.weight], (X, Y))
    with pytest.raises(TypeError, match="data must be a tuple"):
        hkt.GGNLinearOperator(model, nn.MSELoss(), None, 3)
    op = hkt.GGNLinearOperator(model, nn.MSELoss(), None, (X, Y))
    with pytest.raises(TypeError, match="X must be a torch tensor"):
        op @ np.ones(26)
    with pytest.raises(ValueError, match=r"theta must have shape \(26,\)"):
        hkt.to_sequential(net, theta[:-1])
    with pytest.raises(TypeError, match="net must be a pyhessk.torch.TorchMLP"):
        hkt.to_sequential(model, theta)


class _SaysCuda(torch.Tensor):
    """A CPU tensor that reports a CUDA device: what the adapter sees of a CUDA tensor, on a machine without one."""

    @property
    def device(self):
        return torch.device("cuda")


def test_cuda_tensors_without_the_gpu_engine_get_the_adapters_hint():
    from pyhessk import _dispatch

    if _dispatch.probe("cuda")[0] is not None:
        pytest.skip("pyhessk's 'cuda' engine runs here")
    model = make_model([3, 4, 2], [nn.Tanh()])
    net, theta = hkt.from_sequential(model)
    X, Y = data([3, 4, 2], "real")
    theta, X, Y = (t.as_subclass(_SaysCuda) for t in (theta, X, Y))
    hint = r"theta is a CUDA tensor, but pyhessk's 'cuda' engine cannot run here \(.*\); move the tensors to the CPU"
    for call in (lambda: net.forward(theta, X), lambda: net.linearize(theta, X, Y), lambda: net.gnvp(theta, X, Y, X)):
        with pytest.raises(RuntimeError, match=hint):
            call()


def test_cuda_tensors_need_the_gpu_engine():
    from pyhessk import _dispatch

    if _dispatch.probe("cuda")[0] is not None or not torch.cuda.is_available():
        pytest.skip("needs a CUDA tensor and no pyhessk 'cuda' engine")
    model = make_model([3, 4, 2], [nn.Tanh()])
    net, theta = hkt.from_sequential(model)
    with pytest.raises(RuntimeError, match="'cuda' engine cannot run here"):
        net.forward(theta.cuda(), torch.ones(2, 3, dtype=torch.float64, device="cuda"))
