"""torch.func as an optional oracle: SPEC's θ layout is exactly torch.nn.Sequential's, so the dense
Hessian, the GGN and the Jacobian products must agree with PyTorch's autodiff (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from cases import CASE_IDS, CASES, Case
from oracles import activations, rel_err

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")
tf = torch.nn.functional

TORCH_ACT = {
    "identity": torch.nn.Identity,
    "tanh": torch.nn.Tanh,
    "sigmoid": torch.nn.Sigmoid,
    "relu": torch.nn.ReLU,
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "softplus": torch.nn.Softplus,
    "gelu": torch.nn.GELU,  # exact (erf) form by default
    "silu": torch.nn.SiLU,
}


class Sin(torch.nn.Module):
    def forward(self, x):
        return torch.sin(x)


TORCH_ACT["sin"] = Sin


def sequential(case: Case) -> torch.nn.Sequential:
    mods, acts = [], activations(case)
    for l, (fan_in, fan_out) in enumerate(zip(case.sizes[:-1], case.sizes[1:])):
        mods.append(torch.nn.Linear(fan_in, fan_out, bias=case.bias, dtype=torch.float64))
        if l < len(acts):
            mods.append(TORCH_ACT[acts[l]]())
    return torch.nn.Sequential(*mods)


def torch_problem(case: Case, theta, X, Y):
    """(objective of flat θ, output of flat θ, flat θ) written with torch's own modules and losses."""
    model = sequential(case)
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    x = torch.from_numpy(X)
    n = X.shape[0]

    def params(t):
        out, pos = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            out[name] = t[pos : pos + size].reshape(shape)
            pos += size
        return out

    def output(t):
        return torch.func.functional_call(model, params(t), (x,))

    def objective(t):
        f = output(t)
        if case.loss == "mse":
            value = 0.5 * ((f - torch.from_numpy(Y)) ** 2).sum()
        elif case.loss == "softmax_cross_entropy":
            target = torch.from_numpy(Y)
            value = tf.cross_entropy(f, target, reduction="sum")
        else:
            value = tf.binary_cross_entropy_with_logits(f, torch.from_numpy(Y), reduction="sum")
        value = value / n if case.reduction == "mean" else value
        weights = [p for name, p in params(t).items() if name.endswith("weight")]
        return value + 0.5 * case.l2 * sum((w**2).sum() for w in weights)

    return objective, output, torch.from_numpy(theta)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hessian_gnh_and_jacobian_match_torch_func(case, backend):
    theta, X, Y = case.data()
    objective, output, t = torch_problem(case, theta, X, Y)
    H_t = torch.func.hessian(objective)(t).numpy()
    J_t = torch.func.jacrev(output)(t).numpy()  # (n, d, N)
    f_t = output(t).detach()

    def per_output_loss(f):
        return objective_of_output(case, f, Y)

    Hout = torch.func.hessian(per_output_loss)(f_t).numpy()  # (n, d, n, d): block diagonal over samples
    n, d = f_t.shape
    Hk = np.stack([Hout[k, :, k, :] for k in range(n)])
    mask = np.concatenate([np.r_[np.ones(o * i), np.zeros(o if case.bias else 0)]
                           for i, o in zip(case.sizes[:-1], case.sizes[1:])])
    G_t = np.einsum("kdp,kde,keq->pq", J_t, Hk, J_t) + case.l2 * np.diag(mask)

    c = case.net(backend).linearize(theta, X, Y)
    assert rel_err(c.grad, torch.func.grad(objective)(t).numpy()) < 1e-12
    assert rel_err(c.hessian(), H_t) < 1e-11
    assert rel_err(c.gnh(), G_t) < 1e-11
    assert rel_err(c.gnh_entries().block(np.arange(t.numel()), np.arange(t.numel())), G_t) < 1e-11
    V = np.random.default_rng(0).standard_normal((t.numel(), 3))
    assert rel_err(c.jvp(V), np.einsum("kdp,pj->kdj", J_t, V)) < 1e-12


def objective_of_output(case: Case, f, Y):
    """The data term as a function of the network output (no l2), with the case's reduction."""
    n = f.shape[0]
    if case.loss == "mse":
        value = 0.5 * ((f - torch.from_numpy(Y)) ** 2).sum()
    elif case.loss == "softmax_cross_entropy":
        value = tf.cross_entropy(f, torch.from_numpy(Y), reduction="sum")
    else:
        value = tf.binary_cross_entropy_with_logits(f, torch.from_numpy(Y), reduction="sum")
    return value / n if case.reduction == "mean" else value
