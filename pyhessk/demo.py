"""A short demonstration on real data: train a small classifier on the 8×8 digits images shipped with
scikit-learn, then check a Hessian-vector product against finite differences of the gradient and
evaluate a few Gauss–Newton entries exactly and by sampling."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import MLP


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits set (1797 images, 64 pixels scaled to [0, 1], labels 0–9) from scikit-learn's package data."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise SystemExit('the demo needs scikit-learn: pip install "pyhessk[demo]"') from exc
    data = sk_load_digits()
    return data.data / 16.0, data.target.astype(np.int64)


def run(X: np.ndarray, y: np.ndarray, hidden: int = 32, steps: int = 150, seed: int = 0,
        backend: str = "auto", out: Callable[[str], None] = print) -> dict[str, float]:
    """Train briefly, then check curvature; returns the numbers it printed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_train = int(0.8 * len(y))
    tr, te = order[:n_train], order[n_train:]
    Xtr, ytr = X[tr], y[tr]
    classes = int(y.max()) + 1
    net = MLP([X.shape[1], hidden, classes], activation="tanh", loss="cross_entropy", l2=1e-4, backend=backend)
    theta = net.init(seed=seed)
    out(f"pyhessk demo: {net!r}, N = {net.num_params} parameters, engine {net.backend!r}")
    out(f"data: {len(tr)} training and {len(te)} test images of {X.shape[1]} pixels, {classes} classes")

    velocity = np.zeros_like(theta)
    t0 = time.perf_counter()
    for _ in range(steps):  # gradient descent with momentum
        velocity = 0.9 * velocity - 0.5 * net.grad(theta, Xtr, ytr)
        theta = theta + velocity
    accuracy = float(np.mean(net.forward(theta, X[te]).argmax(axis=1) == y[te]))
    out(f"trained {steps} momentum steps in {time.perf_counter() - t0:.2f} s: "
        f"loss {net.loss(theta, Xtr, ytr):.4f}, test accuracy {accuracy:.3f}")

    c = net.linearize(theta, Xtr, ytr)
    v, w = rng.standard_normal((2, net.num_params))
    t0 = time.perf_counter()
    Hv = c.hvp(v)
    t_hvp = time.perf_counter() - t0
    h = 1e-5
    fd = (net.grad(theta + h * v, Xtr, ytr) - net.grad(theta - h * v, Xtr, ytr)) / (2 * h)
    fd_err = float(np.linalg.norm(Hv - fd) / np.linalg.norm(fd))
    sym = float(abs(w @ Hv - v @ c.hvp(w)) / (np.linalg.norm(w) * np.linalg.norm(Hv)))
    out(f"Hessian-vector product: {1e3 * t_hvp:.2f} ms; relative difference from central differences of "
        f"the gradient {fd_err:.1e}; symmetry |wᵀHv − vᵀHw|/(‖w‖‖Hv‖) = {sym:.1e}")

    t0 = time.perf_counter()
    e = c.gnh_entries()
    t_pre = time.perf_counter() - t0
    first_out = hidden * X.shape[1] + hidden  # W_2 starts here: the output layer's weights
    hid = min(100, first_out - 1)  # a first-layer parameter
    rows = np.array([first_out, first_out, first_out + 1, hid, hid])
    cols = np.array([first_out, first_out + hidden, first_out + 1, hid, first_out])
    exact = e.entries(rows, cols)
    eps, delta = 0.1, 0.1
    sampled = e.estimate(rows, cols, eps=eps, delta=delta, seed=seed)
    columns = c.gnvp(np.eye(net.num_params)[:, cols])[rows, np.arange(rows.size)]
    out(f"Gauss–Newton entries (precomputation {1e3 * t_pre:.1f} ms; sampler with ε={eps}, δ={delta}: "
        f"{e.num_samples(eps, delta)} of {len(tr)} samples):")
    out("      p      q        exact G[p,q]    sampled    bound ±ε√(G_pp G_qq)   G e_q from a GN product")
    diag = e.entries(np.r_[rows, cols], np.r_[rows, cols])
    for t, (p, q) in enumerate(zip(rows, cols)):
        bound = eps * np.sqrt(diag[t] * diag[rows.size + t])
        out(f"  {p:5d}  {q:5d}   {exact[t]: .6e}  {sampled[t]: .4e}   {bound:.2e}              {columns[t]: .6e}")
    agree = float(np.abs(exact - columns).max() / np.abs(exact).max())
    out(f"exact entries vs Gauss–Newton products: max relative difference {agree:.1e}")
    return {"accuracy": accuracy, "hvp_fd_error": fd_err, "symmetry": sym, "entries_vs_products": agree}


def main() -> None:
    X, y = load_digits()
    run(X, y)
