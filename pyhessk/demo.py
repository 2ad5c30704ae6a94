"""The ``pyhessk demo``: second-order training and curvature analysis on real data.

It trains a small classifier on the 8×8 digits images shipped with scikit-learn three times from the same
start, for the same wall-time budget each: gradient descent with momentum (Nielsen, ch. 3), Martens'
Hessian-free and Levenberg–Marquardt. At the best parameters it then checks a Hessian-vector product
against central differences of the gradient, evaluates a few Gauss–Newton entries exactly and by
sampling, and computes the top eigenvalues, traces and spectral densities of the Hessian H and the
Gauss–Newton matrix G and a block of G's entries. It prints a summary and writes a report folder: a
Markdown summary with timings and the engine used, and PNG plots (loss curves, spectral densities, the
GNH block). scikit-learn, matplotlib and tqdm come with ``pip install "pyhessk[demo]"``; without
matplotlib the report has no plots, without tqdm there are no progress bars.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import MLP, __version__
from .optim import HessianFree, LevenbergMarquardt
from .spectral import diagonal, eigsh, spectral_density, trace

Printer = Callable[[str], None]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits set (1797 images, 64 pixels scaled to [0, 1], labels 0–9) from scikit-learn's package data."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise SystemExit('the demo needs scikit-learn: pip install "pyhessk[demo]"') from exc
    data = sk_load_digits()
    return data.data / 16.0, data.target.astype(np.int64)


# ---- progress bars (tqdm when installed) ------------------------------------------------------------
class _Bar:
    """A tqdm bar, or nothing when tqdm is missing or progress is off."""

    def __init__(self, enabled: bool, total: float, desc: str, unit: str) -> None:
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            fmt = "{desc:>24s} {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} " + unit + " {postfix}"
            self._bar = tqdm(total=total, desc=desc, bar_format=fmt, leave=False)

    def update_to(self, value: float, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.n = min(value, self._bar.total)
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _blas_threads(threads: int | None) -> Iterator[str]:
    """Limit BLAS threads (threadpoolctl, installed with scikit-learn); yields a description for the report."""
    if threads is None:
        yield "library default"
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "library default (threadpoolctl not installed)"
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield str(threads)


class _Timings(dict):
    """Seconds per labelled task, in the order they ran; ``with timings("label"): ...`` records one."""

    @contextlib.contextmanager
    def __call__(self, label: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self[label] = time.perf_counter() - t0


# ---- training ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """One optimizer's training run: wall time (optimizer only) and training loss after each step."""

    name: str
    times: list[float] = field(default_factory=lambda: [0.0])
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    theta: np.ndarray | None = None
    accuracy: float = float("nan")


def _train(name: str, step: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, loss: Callable[[np.ndarray], float],
           budget: float, progress: bool) -> Run:
    run = Run(name, losses=[loss(theta)])
    bar = _Bar(progress, budget, name, "s")
    clock = 0.0
    while clock < budget:
        t0 = time.perf_counter()
        theta = step(theta)
        clock += time.perf_counter() - t0  # the loss below is for the record, outside the optimizer's time
        run.steps += 1
        run.times.append(clock)
        run.losses.append(loss(theta))
        bar.update_to(clock, loss=f"{run.losses[-1]:.4f}")
    bar.close()
    run.theta = theta
    return run


# ---- the demonstration ------------------------------------------------------------------------------
def run(X: np.ndarray, y: np.ndarray, hidden: int = 32, budget: float = 8.0, seed: int = 0, backend: str = "auto",
        out: Printer = print, report: str | Path | None = None, progress: bool = False,
        threads: int | None = 1, l2: float = 1e-5) -> dict[str, Any]:
    """Train with three optimizers, analyse the curvature at the best parameters, and write a report.

    Args:
        X: images (n, pixels), y: integer labels (n,).
        hidden: width of the hidden tanh layer.
        budget: optimizer wall time per method, in seconds.
        seed: seed of the split, the initial parameters and every estimator.
        backend: the pyhessk engine.
        out: where the summary lines go.
        report: a folder for the Markdown report and PNG plots (None: no report).
        progress: show tqdm progress bars (when tqdm is installed).
        threads: BLAS threads while the demo runs (None leaves the library default).
        l2: weight decay of the objective.

    Returns:
        The numbers it printed (losses, checks, eigenvalues, traces) and the trained θ.
    """
    with _blas_threads(threads) as blas:
        return _run(X, y, hidden, budget, seed, backend, out, report, progress, blas, l2)


def _run(X: np.ndarray, y: np.ndarray, hidden: int, budget: float, seed: int, backend: str, out: Printer,
         report: str | Path | None, progress: bool, blas: str, l2: float) -> dict[str, Any]:
    t_start = time.perf_counter()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_train = int(0.8 * len(y))
    tr, te = order[:n_train], order[n_train:]
    Xtr, ytr = X[tr], y[tr]
    classes = int(y.max()) + 1
    net = MLP([X.shape[1], hidden, classes], activation="tanh", loss="cross_entropy", l2=l2, backend=backend)
    theta0 = net.init(seed=seed)
    out(f"pyhessk demo: {net!r}, N = {net.num_params} parameters, engine {net.backend!r}")
    out(f"data: {len(tr)} training and {len(te)} test images of {X.shape[1]} pixels, {classes} classes")
    out(f"training: the same start and {budget:g} s of optimizer time each (BLAS threads: {blas})")

    def loss(theta: np.ndarray) -> float:
        return net.loss(theta, Xtr, ytr)

    velocity = np.zeros_like(theta0)

    def momentum(theta: np.ndarray) -> np.ndarray:
        nonlocal velocity
        velocity = 0.9 * velocity - 0.5 * net.grad(theta, Xtr, ytr)
        return theta + velocity

    hf = HessianFree(net, damping=1.0, seed=seed)
    lm = LevenbergMarquardt(net, mu=1e-2, cg_rtol=1e-4, cg_max_iter=200)
    runs = [_train("gradient descent + momentum", momentum, theta0, loss, budget, progress),
            _train("Hessian-free (Martens)", lambda t: hf.step(t, Xtr, ytr), theta0, loss, budget, progress),
            _train("Levenberg–Marquardt", lambda t: lm.step(t, Xtr, ytr), theta0, loss, budget, progress)]
    out(f"  {'optimizer':30s} {'steps':>6s} {'train loss':>11s} {'test acc.':>9s}")
    for r in runs:
        r.accuracy = float(np.mean(net.forward(r.theta, X[te]).argmax(axis=1) == y[te]))
        out(f"  {r.name:30s} {r.steps:6d} {r.losses[-1]:11.5f} {r.accuracy:9.3f}")
    best = min(runs, key=lambda r: r.losses[-1])
    theta = best.theta
    out(f"curvature at the parameters of {best.name} (training loss {best.losses[-1]:.5f}):")

    timed = _Timings()

    result: dict[str, Any] = {"theta": theta, "accuracy": best.accuracy, "best": best.name,
                              "losses": {r.name: r.losses[-1] for r in runs}, "steps": {r.name: r.steps for r in runs}}
    with timed("linearize (forward + backward)"):
        c = net.linearize(theta, Xtr, ytr)
    checks = _checks(net, c, theta, Xtr, ytr, hidden, X.shape[1], seed, rng, out, timed)
    result.update(checks)

    tasks = ["top eigenvalues of H", "top eigenvalues of G", "most negative eigenvalue of H",
             "trace of H, exact (N products)", "trace of H, Hutch++", "trace of G, exact (GNH diagonal)",
             "trace of G, Hutch++", "spectral density of H", "spectral density of G", "GNH block"]
    bar = _Bar(progress, len(tasks), "curvature", "tasks")
    spectra: dict[str, Any] = {}
    for i, task in enumerate(tasks):
        bar.update_to(i, task=task)
        with timed(task):
            if task.startswith("top eigenvalues"):
                kind = "hessian" if task.endswith("H") else "gnh"
                spectra[f"top_{kind}"] = eigsh(c, k=5, kind=kind, which="LA", tol=1e-6, seed=seed)[0]
            elif task.startswith("most negative"):
                spectra["bottom_hessian"] = eigsh(c, k=1, kind="hessian", which="SA", tol=1e-6, seed=seed)[0]
            elif task.startswith("trace"):
                kind = "hessian" if task.startswith("trace of H") else "gnh"
                if task.endswith("Hutch++"):
                    spectra[f"hutchpp_{kind}"] = trace(c, kind, "hutch++", probes=60, seed=seed)
                else:
                    spectra[f"trace_{kind}"] = float(np.sum(diagonal(c, kind, "exact"), dtype=np.float64))
            elif task.startswith("spectral density"):
                kind = "hessian" if task.endswith("H") else "gnh"
                # PyHessian's kernel variance 1e-5 suits eigenvalues ≫ 1; scale it to this spectrum instead
                sigma = max(float(np.abs(spectra[f"top_{kind}"]).max()) / 150, 1e-150)
                spectra[f"density_{kind}"] = spectral_density(c, kind, runs=4, steps=60, seed=seed,
                                                              sigma_squared=sigma * sigma, overhead=0.0)
            else:
                first_out = hidden * X.shape[1] + hidden  # W_2, the output layer's weights, starts here
                block = np.arange(first_out, first_out + classes * hidden)
                spectra["gnh_block"] = c.gnh_entries().block(block, block)
    bar.close()
    for kind, sym in (("hessian", "H"), ("gnh", "G")):
        top = ", ".join(f"{v:.4g}" for v in spectra[f"top_{kind}"])
        out(f"  top-5 eigenvalues of {sym}: {top}")
    out(f"  most negative eigenvalue of H: {spectra['bottom_hessian'][0]:.4g}")
    for kind, sym in (("hessian", "H"), ("gnh", "G")):
        out(f"  trace of {sym}: {spectra[f'trace_{kind}']:.5g} exact, {spectra[f'hutchpp_{kind}']:.5g} by Hutch++ "
            "(60 products)")
    result.update({k: v for k, v in spectra.items() if not k.startswith(("density", "gnh_block"))})
    result["seconds"] = time.perf_counter() - t_start
    if report is not None:
        folder = _write_report(Path(report), net, runs, best, checks, spectra, timed, budget, blas, len(tr),
                               len(te), result["seconds"])
        out(f"report written to {folder}")
    out(f"demo finished in {result['seconds']:.1f} s")
    return result


def _checks(net: MLP, c: Any, theta: np.ndarray, Xtr: np.ndarray, ytr: np.ndarray, hidden: int, n0: int, seed: int,
            rng: np.random.Generator, out: Printer, timed: _Timings) -> dict[str, Any]:
    """The Hessian-vector product against finite differences, and Gauss–Newton entries three ways."""
    v, w = rng.standard_normal((2, net.num_params))
    with timed("Hessian-vector product"):
        Hv = c.hvp(v)
    h = 1e-5
    fd = (net.grad(theta + h * v, Xtr, ytr) - net.grad(theta - h * v, Xtr, ytr)) / (2 * h)
    fd_err = float(np.linalg.norm(Hv - fd) / np.linalg.norm(fd))
    sym = float(abs(w @ Hv - v @ c.hvp(w)) / (np.linalg.norm(w) * np.linalg.norm(Hv)))
    out(f"  Hessian-vector product: {1e3 * timed['Hessian-vector product']:.2f} ms; relative difference "
        f"from central differences of the gradient {fd_err:.1e}; symmetry |wᵀHv − vᵀHw|/(‖w‖‖Hv‖) = {sym:.1e}")
    with timed("GNH precomputation"):
        e = c.gnh_entries()
    first_out = hidden * n0 + hidden  # W_2 starts here: the output layer's weights
    hid = min(100, first_out - 1)  # a first-layer parameter
    rows = np.array([first_out, first_out, first_out + 1, hid, hid])
    cols = np.array([first_out, first_out + hidden, first_out + 1, hid, first_out])
    exact = e.entries(rows, cols)
    eps, delta = 0.1, 0.1
    sampled = e.estimate(rows, cols, eps=eps, delta=delta, seed=seed, allow_exact=False)  # show the sampler
    columns = c.gnvp(np.eye(net.num_params)[:, cols])[rows, np.arange(rows.size)]
    diag = e.entries(np.r_[rows, cols], np.r_[rows, cols])
    bounds = eps * np.sqrt(diag[: rows.size] * diag[rows.size:])
    out(f"  Gauss–Newton entries (sampler with ε={eps}, δ={delta}: {e.num_samples(eps, delta)} of {len(ytr)} "
        "samples):")
    out("      p      q        exact G[p,q]    sampled    bound ±ε√(G_pp G_qq)   G e_q from a GN product")
    for t, (p, q) in enumerate(zip(rows, cols)):
        out(f"  {p:5d}  {q:5d}   {exact[t]: .6e}  {sampled[t]: .4e}   {bounds[t]:.2e}              {columns[t]: .6e}")
    agree = float(np.abs(exact - columns).max() / np.abs(exact).max())
    out(f"  exact entries vs Gauss–Newton products: max relative difference {agree:.1e}")
    table = list(zip(rows.tolist(), cols.tolist(), exact.tolist(), sampled.tolist(), bounds.tolist(),
                     columns.tolist()))
    return {"hvp_fd_error": fd_err, "symmetry": sym, "entries_vs_products": agree, "entries": table,
            "sampler": (eps, delta, e.num_samples(eps, delta))}


# ---- the report -------------------------------------------------------------------------------------
def _plots(folder: Path, runs: list[Run], spectra: dict[str, Any], hidden: int) -> tuple[list[tuple[str, str]], str]:
    """Write the PNGs; returns [(title, file)] and a note (why there are none, when matplotlib is missing)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return [], 'matplotlib is not installed, so this report has no plots (pip install "pyhessk[demo]").'
    files = []
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for r in runs:
        ax.plot(r.times, r.losses, label=f"{r.name} ({r.steps} steps, test acc. {r.accuracy:.3f})")
    ax.set(xlabel="optimizer wall time (s)", ylabel="training loss (cross-entropy + L2)", yscale="log",
           title="Training on the digits: the same start, the same time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(folder / "loss_curves.png", dpi=120)
    files.append(("Training loss against wall time", "loss_curves.png"))

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    for ax, (kind, label) in zip(fig.subplots(1, 2), (("hessian", "Hessian H"), ("gnh", "Gauss–Newton G"))):
        grid, dens = spectra[f"density_{kind}"]
        ax.semilogy(grid, np.maximum(dens, 1e-12))
        ax.set(xlabel="eigenvalue", ylabel="density (SLQ)", title=f"Spectral density of {label}", ylim=(1e-8, None))
        ax.grid(True, alpha=0.3)
    fig.savefig(folder / "spectral_density.png", dpi=120)
    files.append(("Eigenvalue densities by stochastic Lanczos quadrature (4 runs, 60 steps)", "spectral_density.png"))

    block = spectra["gnh_block"]
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    ax = fig.subplots()
    lim = float(np.abs(block).max()) or 1.0
    im = ax.imshow(block, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ticks = np.arange(0, block.shape[0], hidden)
    ax.set_xticks(ticks, [str(t // hidden) for t in ticks])
    ax.set_yticks(ticks, [str(t // hidden) for t in ticks])
    ax.set(xlabel="output unit (class) of the weight", ylabel="output unit (class) of the weight",
           title="Exact GNH block: output-layer weights")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.savefig(folder / "gnh_block.png", dpi=120)
    files.append(("A block of exact Gauss–Newton entries (all output-layer weights)", "gnh_block.png"))
    return files, ""


def _write_report(folder: Path, net: MLP, runs: list[Run], best: Run, checks: dict[str, Any], spectra: dict[str, Any],
                  timed: _Timings, budget: float, blas: str, n_train: int, n_test: int, seconds: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    hidden = net.sizes[1]
    plots, note = _plots(folder, runs, spectra, hidden)
    eps, delta, s = checks["sampler"]
    fmt = lambda vals: ", ".join(f"{v:.4g}" for v in vals)  # noqa: E731
    lines = [
        "# pyhessk demo report",
        "",
        f"pyhessk {__version__} on engine `{net.backend}`; NumPy {np.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; BLAS threads: {blas}. Whole run: {seconds:.1f} s.",
        "",
        f"Data: the scikit-learn digits, {n_train} training and {n_test} test images (8×8 pixels, 10 classes). "
        f"Network: `{net!r}`, N = {net.num_params} parameters.",
        "",
        f"## Training: the same start and {budget:g} s of optimizer time each",
        "",
        "| optimizer | steps | training loss | test accuracy |",
        "|---|---:|---:|---:|",
        *[f"| {r.name} | {r.steps} | {r.losses[-1]:.5f} | {r.accuracy:.3f} |" for r in runs],
        "",
        "Gradient descent uses step 0.5 and momentum 0.9 on the full batch. Hessian-free (Martens 2010) runs CG "
        "on Gauss–Newton products with the relative-progress stop, Levenberg–Marquardt damping, backtracking, "
        "warm starts and the empirical-Fisher preconditioner. Levenberg–Marquardt (Hagan & Menhaj 1994) solves "
        f"(G + μI)Δθ = −g by {'CG' if net.num_params > 1024 else 'Cholesky'} "
        f"(N = {net.num_params}). The recorded loss is evaluated outside the optimizer's clock.",
        "",
        f"## Curvature at the parameters of {best.name}",
        "",
        "| | Hessian H | Gauss–Newton G |",
        "|---|---|---|",
        f"| top-5 eigenvalues (block Lanczos) | {fmt(spectra['top_hessian'])} | {fmt(spectra['top_gnh'])} |",
        f"| most negative eigenvalue | {spectra['bottom_hessian'][0]:.4g} | ≥ 0 (positive semi-definite) |",
        f"| trace, exact | {spectra['trace_hessian']:.5g} | {spectra['trace_gnh']:.5g} |",
        f"| trace, Hutch++ with 60 products | {spectra['hutchpp_hessian']:.5g} | {spectra['hutchpp_gnh']:.5g} |",
        "",
        "## Checks",
        "",
        f"- Hessian-vector product against central differences of the gradient: relative difference "
        f"{checks['hvp_fd_error']:.1e}; symmetry |wᵀHv − vᵀHw|/(‖w‖‖Hv‖) = {checks['symmetry']:.1e}.",
        f"- Gauss–Newton entries: exact (O(n·d) each), sampled (ε = {eps}, δ = {delta}: {s} of {n_train} samples) "
        f"and read off a Gauss–Newton product; exact against products: {checks['entries_vs_products']:.1e}.",
        "",
        "| p | q | exact G[p,q] | sampled | bound ±ε√(G_pp G_qq) | (G e_q)[p] |",
        "|---:|---:|---:|---:|---:|---:|",
        *[f"| {p} | {q} | {ex:.6e} | {sa:.4e} | {bd:.2e} | {co:.6e} |" for p, q, ex, sa, bd, co in checks["entries"]],
        "",
        "## Timings",
        "",
        "| task | seconds |",
        "|---|---:|",
        f"| training, per optimizer | {budget:g} |",
        *[f"| {label} | {sec:.3f} |" for label, sec in timed.items()],
        "",
        "## Plots",
        "",
    ]
    lines += [f"![{title}]({file})\n\n{title}.\n" for title, file in plots] or [note, ""]
    path = folder / "summary.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main(argv_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo on the digits (the ``pyhessk demo`` command); options as ``run`` takes them."""
    options = {"report": "pyhessk-demo-report", "progress": True, **(argv_options or {})}
    X, y = load_digits()
    return run(X, y, **options)
