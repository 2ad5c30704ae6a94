"""Declarative small MLP cases (curvlinops' case-dict style): architecture, loss options and a seed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import pyhessk as hk


@dataclass(frozen=True)
class Case:
    sizes: tuple[int, ...]
    activation: str | tuple[str, ...] = "tanh"
    loss: str = "mse"
    l2: float = 0.0
    reduction: str = "mean"
    bias: bool = True
    n: int = 5
    seed: int = 0
    targets: str = "default"  # "probabilities" for soft softmax targets
    tags: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        act = self.activation if isinstance(self.activation, str) else "-".join(self.activation)
        extra = "".join(f"-{t}" for t in (
            f"l2={self.l2}" if self.l2 else "", "sum" if self.reduction == "sum" else "",
            "nobias" if not self.bias else "", "soft" if self.targets == "probabilities" else "") if t)
        return f"{'x'.join(map(str, self.sizes))}-{act}-{self.loss}{extra}"

    def net(self, backend: str = "numpy") -> hk.MLP:
        act = self.activation if isinstance(self.activation, str) else list(self.activation)
        return hk.MLP(list(self.sizes), activation=act, loss=self.loss, l2=self.l2, reduction=self.reduction,
                      bias=self.bias, backend=backend)

    def data(self, dtype="float64"):
        """(theta, X, Y) for this case, deterministic in the seed."""
        rng = np.random.default_rng(self.seed)
        net = self.net()
        theta = net.init(seed=self.seed + 1, dtype=dtype)
        X = rng.standard_normal((self.n, self.sizes[0])).astype(dtype)
        d = self.sizes[-1]
        if self.loss == "mse":
            Y = rng.standard_normal((self.n, d)).astype(dtype)
        elif self.loss == "softmax_cross_entropy" and self.targets != "probabilities":
            Y = rng.integers(0, d, self.n)
        elif self.loss == "softmax_cross_entropy":
            P = rng.random((self.n, d))
            Y = (P / P.sum(axis=1, keepdims=True)).astype(dtype)
        else:
            Y = rng.random((self.n, d)).astype(dtype)
        return theta, X, Y


CASES: list[Case] = [
    Case((3, 4, 3), "tanh", "mse"),
    Case((4, 5, 3), "sigmoid", "softmax_cross_entropy", seed=1),
    Case((3, 4, 2), "softplus", "sigmoid_cross_entropy", seed=2),
    Case((3, 4, 4, 3), "gelu", "softmax_cross_entropy", l2=0.1, seed=3),
    Case((2, 5, 3, 2), "silu", "mse", reduction="sum", seed=4),
    Case((3, 4, 3, 2), "sin", "sigmoid_cross_entropy", bias=False, seed=5),
    Case((3, 5, 4), "relu", "softmax_cross_entropy", seed=7, n=7),
    Case((3, 4, 4, 2), "leaky_relu", "mse", l2=0.05, seed=11),
    Case((3, 4, 3), "identity", "softmax_cross_entropy", targets="probabilities", seed=8),
    Case((3, 4, 5, 3, 2), ("tanh", "gelu", "softplus"), "softmax_cross_entropy", seed=9, n=6),
    Case((2, 3), "tanh", "softmax_cross_entropy", seed=10),  # one layer: affine in θ, so G = H
    Case((1, 1, 1), "tanh", "mse", seed=11, n=1),
]
CASE_IDS = [c.id for c in CASES]
SMOOTH_CASES = [c for c in CASES if not any(a in ("relu", "leaky_relu") for a in (
    (c.activation,) if isinstance(c.activation, str) else c.activation))]


def sampled_estimates(backend: str, n: int = 400) -> np.ndarray:
    """Sampled GNH entries of one fixed case, seed and index set (``allow_exact=False``: sampled whatever the
    batch size n): engines that share the C++ engine's per-entry random stream must return the same
    estimates."""
    case = Case((4, 6, 5), "tanh", "softmax_cross_entropy", n=n, seed=2)
    th, X, Y = case.data("float64")
    rows, cols = np.array([0, 3, 7, 30, 40, 55]), np.array([1, 3, 9, 20, 41, 60])
    e = case.net(backend).linearize(th, X, Y).gnh_entries()
    return e.estimate(rows, cols, eps=0.5, delta=0.5, seed=11, allow_exact=False)


def curvature_reads(c, V, U, dense: bool = True) -> dict:
    """Every product and GNH read of one Curvature on V (N, k) and U (n, d, k'), the factored G·V included: what
    the engine-parity tests compare with the NumPy engine (the sampler is left out: its random stream differs
    between engines).
    ``dense`` adds c.hessian() and c.gnh()."""
    e = c.gnh_entries()
    N = c.num_params
    rows = np.arange(N)
    out = {
        "loss": np.array([c.loss]), "grad": c.grad, "hvp": c.hvp(V), "hvp1": c.hvp(V[:, 0]), "gnvp": c.gnvp(V),
        "jvp": c.jvp(V), "vjp": c.vjp(U), "entries": e.entries(rows, rows[::-1]),
        "block": e.block(rows[:7], rows[-5:]), "columns": e.column(rows[[0, N // 2, N - 1]]),
        "diagonal": e.diagonal(), "factored": e.gnvp(V), "factored1": e.gnvp(V[:, 0]),
        "fisher": c.empirical_fisher_diagonal(),
    }
    if dense:
        out.update(hessian=c.hessian(), gnh=c.gnh())
    return out
