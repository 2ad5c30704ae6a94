"""A reproduction study in the spirit of Chen, Reiz, Yu, Bungartz and Biros (SIMAX 2021) on real data.

Two MLPs on scikit-learn's 8×8 digits (1797 images, 64 pixels in [0, 1]) are trained for a few seconds
(Adam, full batch): a classifier (64 → h → 10, softmax cross-entropy) and an autoencoder (64 → h → 64,
sigmoid cross-entropy on the pixels, the logistic output fused into the loss). At the trained θ, on a
batch small enough that the dense Gauss–Newton matrix G (N × N, N a few thousand) fits, it measures:

1. time per exact entry (``e.entries``) against a GGN-product column (``c.gnvp`` of a unit vector, one
   and a block at a time), an entry-oracle column (``e.column``) and, when present, the factored
   product (``e.gnvp``);
2. the sampled entry (``e.estimate``) on the whole data set: its error |Ĝ − G|/√(G_pp G_qq) against ε,
   the share of entries within ε (≥ 1 − δ is promised) and its cost per entry;
3. HODLR compression of K = G + λI (``pyhessk.gnh_hodlr``) against the tolerance: ranks per level,
   memory against N², entries read, build and factorization time, and the errors of the product and of
   the solve against the dense K;
4. solves of K x = ∇L: the exact Woodbury solve (``c.gnh_solve``, when the library has it), the HODLR
   solve, CG on ``c.linear_operator("gnh", λ)`` (``scipy.sparse.linalg.cg``) with and without the HODLR
   inverse as preconditioner, and a dense Cholesky, each with its error against the dense solution.

λ = 10⁻³·λ_max(G) unless ``--damping-ratio`` says otherwise. Timings are the best of a few rounds.

Run:  python -m bench.study_digits --out bench/results [--quick] [--engine auto] [--machine epyc2c] [--threads 2]
Writes study-digits-<machine>-<date>.md (tables), .json (raw numbers) and study-digits-<machine>-<date>-*.png.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.sparse.linalg import cg

import pyhessk as hk
from pyhessk.demo import load_digits


@dataclass(frozen=True)
class Setup:
    """One model of the study: its architecture, the curvature batch and the training budget."""

    name: str
    sizes: tuple[int, ...]
    loss: str
    batch: int  # samples in the curvature snapshot (n·d sets the Woodbury Gram's size)
    steps: int  # Adam steps of training (full batch)


FULL = (
    Setup("classifier", (64, 32, 10), "softmax_cross_entropy", batch=256, steps=300),
    Setup("autoencoder", (64, 24, 64), "sigmoid_cross_entropy", batch=40, steps=300),
)
QUICK = (
    Setup("classifier", (64, 12, 10), "softmax_cross_entropy", batch=64, steps=60),
    Setup("autoencoder", (64, 6, 64), "sigmoid_cross_entropy", batch=12, steps=60),
)
HODLR_TOLS = (1e-1, 1e-2, 1e-3, 1e-4)
EPSILONS = (0.5, 0.3, 0.2, 0.1)
DELTA = 0.1
LEAF = 64


def best_time(fn: Callable[[], Any], rounds: int = 3) -> float:
    """The fastest of ``rounds`` timed calls, after one untimed warm-up."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / np.linalg.norm(b))


# ---- training ---------------------------------------------------------------------------------------
def targets(setup: Setup, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return labels if setup.loss == "softmax_cross_entropy" else X


def train(setup: Setup, engine: str, X: np.ndarray, labels: np.ndarray, seed: int) -> tuple[hk.MLP, np.ndarray, dict]:
    """Adam (lr 1e-2) on the full set for ``setup.steps`` steps: a little training, a few seconds."""
    net = hk.MLP(list(setup.sizes), activation="tanh", loss=setup.loss, backend=engine)
    theta = net.init(seed=seed)
    Y = targets(setup, X, labels)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    b1, b2, lr = 0.9, 0.999, 1e-2
    loss0 = net.loss(theta, X, Y)
    t0 = time.perf_counter()
    for t in range(1, setup.steps + 1):
        g = net.grad(theta, X, Y)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + 1e-8)
    info = {"steps": setup.steps, "seconds": time.perf_counter() - t0, "loss_before": loss0,
            "loss_after": net.loss(theta, X, Y)}
    if setup.loss == "softmax_cross_entropy":
        info["train_accuracy"] = float((net.forward(theta, X).argmax(axis=1) == labels).mean())
    return net, theta, info


# ---- 1. entry against column -------------------------------------------------------------------------
def entry_vs_column(c: hk.Curvature, rng: np.random.Generator) -> dict:
    e = c.gnh_entries()
    N = c.num_params
    rows, cols = rng.integers(0, N, 4000), rng.integers(0, N, 4000)
    J = rng.choice(N, 32, replace=False)
    E = np.zeros((N, J.size), dtype=c.dtype)
    E[J, np.arange(J.size)] = 1
    out = {
        "exact entry (e.entries, 4000 at once)": best_time(lambda: e.entries(rows, cols)) / rows.size,
        "exact entry (e.entries, one at a time)": best_time(lambda: [e.entries(rows[i:i + 1], cols[i:i + 1])
                                                                    for i in range(200)]) / 200,
        "GGN-product column (c.gnvp, one unit vector)": best_time(lambda: c.gnvp(E[:, 0])),
        "GGN-product column (c.gnvp, block of 32)": best_time(lambda: c.gnvp(E)) / J.size,
        "entry-oracle column (e.column, one)": best_time(lambda: e.column(int(J[0]))),
        "entry-oracle column (e.column, 32 at once)": best_time(lambda: e.column(J)) / J.size,
    }
    if hasattr(e, "gnvp"):
        out["factored product column (e.gnvp, one unit vector)"] = best_time(lambda: e.gnvp(E[:, 0]))
        out["factored product column (e.gnvp, block of 32)"] = best_time(lambda: e.gnvp(E)) / J.size
    return out


# ---- 2. the sampler -----------------------------------------------------------------------------------
def sampler(c_full: hk.Curvature, rng: np.random.Generator, pairs: int) -> list[dict]:
    e = c_full.gnh_entries()
    N = c_full.num_params
    diag = e.diagonal().astype(np.float64)
    live = np.flatnonzero(diag > 0)
    rows, cols = rng.choice(live, pairs), rng.choice(live, pairs)
    exact = e.entries(rows, cols).astype(np.float64)
    scale = np.sqrt(diag[rows] * diag[cols])
    t_exact = best_time(lambda: e.entries(rows, cols)) / pairs
    methods = ["mean"]
    if "method" in inspect.signature(e.estimate).parameters:
        methods.append("median_of_means")
    out = []
    for method in methods:
        kw = {} if method == "mean" else {"method": method}
        if "allow_exact" in inspect.signature(e.estimate).parameters:
            kw["allow_exact"] = False  # the estimator itself, also where exact entries would be cheaper
        for eps in EPSILONS:
            est = e.estimate(rows, cols, eps=eps, delta=DELTA, seed=1, **kw).astype(np.float64)
            err = np.abs(est - exact) / scale
            s = e.num_samples(eps, DELTA, **{k: v for k, v in kw.items() if k == "method"})
            out.append({
                "method": method, "eps": eps, "delta": DELTA, "draws": s, "n": c_full.num_samples, "N": N,
                "sampled": bool(np.any(est != exact)),
                "default_samples": (e.will_sample(eps, DELTA, method) if hasattr(e, "will_sample") else None),
                "median_err": float(np.median(err)), "p90_err": float(np.quantile(err, 0.9)),
                "max_err": float(err.max()), "within_eps": float(np.mean(err <= eps)),
                "seconds_per_entry": best_time(lambda eps=eps, kw=kw: e.estimate(rows, cols, eps=eps, delta=DELTA,
                                                                                  seed=2, **kw)) / pairs,
                "exact_seconds_per_entry": t_exact,
            })
    return out


# ---- 3. HODLR against the tolerance ------------------------------------------------------------------
def hodlr_sweep(c: hk.Curvature, K: np.ndarray, lam: float, rng: np.random.Generator) -> tuple[list[dict], dict]:
    """The records, and {tol: (HodlrMatrix, build + factor seconds)} for the solves to reuse."""
    N = c.num_params
    V = rng.standard_normal((N, 4))
    b = rng.standard_normal(N)
    x = sla.cho_solve(sla.cho_factor(K), b)
    out, built = [], {}
    for tol in HODLR_TOLS:
        t0 = time.perf_counter()
        H = hk.gnh_hodlr(c, lam, tol=tol, leaf_size=LEAF)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            H.factorize()
            t_fact = time.perf_counter() - t0
            xt = H.solve(b).astype(np.float64)
            solve_err, residual = rel(xt, x), float(np.linalg.norm(K @ xt - b) / np.linalg.norm(b))
            built[tol] = (H, t_build + t_fact)
        except np.linalg.LinAlgError:
            t_fact, solve_err, residual = float("nan"), float("nan"), float("nan")
        rep = H.report()
        out.append({
            "tol": tol, "build_s": t_build, "factor_s": t_fact, "stored": rep.stored, "memory_ratio": rep.memory_ratio,
            "entries_read_ratio": rep.entries_evaluated / float(N * N), "dense_blocks": rep.dense_blocks,
            "max_rank_per_level": [lv["max_rank"] for lv in rep.levels],
            "mean_rank_per_level": [lv["mean_rank"] for lv in rep.levels],
            "block_size_per_level": [lv["block_size"] for lv in rep.levels],
            "rel_fro_error": rel(H.to_dense(), K), "rel_matvec_error": rel(H @ V, K @ V),
            "solve_rel_error": solve_err, "solve_rel_residual": residual,
            "probe_product_columns": rep.probe_products,
        })
    return out, built


# ---- 4. solves ------------------------------------------------------------------------------------------
def solves(c: hk.Curvature, K: np.ndarray, lam: float, t_dense_g: float, built: dict) -> list[dict]:
    b = c.grad.astype(np.float64)
    t0 = time.perf_counter()
    x = sla.cho_solve(sla.cho_factor(K), b)
    t_chol = time.perf_counter() - t0
    out = [{"method": "dense Cholesky (G formed by c.gnh())", "seconds": t_dense_g + t_chol, "setup_s": t_dense_g,
            "rel_error": rel(sla.cho_solve(sla.cho_factor(K), b), x), "iterations": None}]
    if hasattr(c, "gnh_solve"):
        t0 = time.perf_counter()
        xw = c.gnh_solve(b, lam)
        t1 = time.perf_counter()
        c.gnh_solve(b, lam)  # a second right-hand side reuses the factorization
        t2 = time.perf_counter()
        out.append({"method": "Woodbury (c.gnh_solve), first / next right-hand side", "seconds": t1 - t0,
                    "next_s": t2 - t1, "rel_error": rel(xw, x), "iterations": None})
    else:
        out.append({"method": "Woodbury (c.gnh_solve)", "seconds": float("nan"), "rel_error": float("nan"),
                    "iterations": None, "note": "c.gnh_solve is not in this version of pyhessk"})
    precond = None
    for tol, (H, setup_s) in built.items():
        t0 = time.perf_counter()
        xh = H.solve(b)
        t_solve = time.perf_counter() - t0
        err = rel(xh, x)
        out.append({"method": f"HODLR solve, tol {tol:g} (build + factor / solve)", "seconds": setup_s + t_solve,
                    "setup_s": setup_s, "next_s": t_solve, "rel_error": err, "iterations": None})
        if precond is None and err < 0.5:  # the loosest K̃ whose inverse is a useful preconditioner
            precond = (tol, H)
    op = c.linear_operator("gnh", lam)
    runs = [("CG", None, rtol) for rtol in (1e-4, 1e-8)]
    if precond is not None:
        runs += [(f"CG preconditioned by HODLR (tol {precond[0]:g})", precond[1].linear_operator(inverse=True), 1e-8)]
    for name, M, rtol in runs:
        steps: list = []
        t0 = time.perf_counter()
        xc, info = cg(op, b, rtol=rtol, maxiter=5000, M=M, callback=steps.append)
        out.append({"method": f"{name}, rtol {rtol:g}", "seconds": time.perf_counter() - t0, "rel_error": rel(xc, x),
                    "iterations": len(steps), "converged": info == 0})
    out.append({"method": "(reference) t_chol of the dense K alone", "seconds": t_chol, "rel_error": 0.0,
                "iterations": None})
    return out


# ---- the report ----------------------------------------------------------------------------------------
def run_model(setup: Setup, engine: str, X: np.ndarray, labels: np.ndarray, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    net, theta, info = train(setup, engine, X, labels, args.seed)
    idx = rng.choice(X.shape[0], setup.batch, replace=False)
    c = net.linearize(theta, X[idx], targets(setup, X, labels)[idx])
    t0 = time.perf_counter()
    c.gnh_entries()
    t_pre = time.perf_counter() - t0
    t0 = time.perf_counter()
    G = np.asarray(c.gnh(), dtype=np.float64)
    t_dense_g = time.perf_counter() - t0
    ev = np.linalg.eigvalsh(G)
    lam = args.damping_ratio * float(ev[-1])
    K = G + lam * np.eye(G.shape[0])
    res = {"setup": setup.__dict__, "engine": net.backend, "N": c.num_params, "n": c.num_samples,
           "d": setup.sizes[-1], "training": info, "precompute_s": t_pre, "dense_gnh_s": t_dense_g,
           "damping": lam, "lambda_max": float(ev[-1]), "cond_K": float((ev[-1] + lam) / (max(ev[0], 0.0) + lam)),
           "numerical_rank_G": int(np.sum(ev > 1e-10 * ev[-1]))}
    print(f"[{setup.name}] N={res['N']} n={res['n']} trained {info['seconds']:.1f} s; λ={lam:.3g}", flush=True)
    res["entry_vs_column"] = entry_vs_column(c, rng)
    print(f"[{setup.name}] entries and columns timed", flush=True)
    c_full = net.linearize(theta, X, targets(setup, X, labels))
    res["sampler"] = sampler(c_full, rng, pairs=args.pairs)
    print(f"[{setup.name}] sampler done", flush=True)
    res["hodlr"], built = hodlr_sweep(c, K, lam, rng)
    print(f"[{setup.name}] HODLR sweep done", flush=True)
    res["solves"] = solves(c, K, lam, t_dense_g, built)
    print(f"[{setup.name}] solves done", flush=True)
    return res


def fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return "n/a" if np.isnan(x) else f"{x:.3g}"
    return str(x)


def markdown(results: list[dict], meta: dict) -> str:
    L = [f"# Digits study: exact and sampled GNH entries, HODLR compression and solves ({meta['machine']}, {meta['date']})",
         "", f"Command: `{meta['command']}`. pyhessk {meta['pyhessk']}, numpy {meta['numpy']}, scipy {meta['scipy']}, "
         f"{meta['cpu']}, BLAS threads {meta['threads']}. Times are the best of 3 rounds after a warm-up, in seconds. Errors are against the "
         "dense G (float64) built by `c.gnh()`. K = G + λI with λ = "
         f"{meta['damping_ratio']:g}·λ_max(G).", ""] + ([f"**Note.** {meta['note']}", ""] if meta["note"] else [])
    for r in results:
        s = r["setup"]
        tr = r["training"]
        L += [f"## {s['name']}: sizes {list(s['sizes'])}, {s['loss']}, engine {r['engine']}", "",
              f"N = {r['N']} parameters; curvature batch n = {r['n']}, d = {r['d']} (n·d = {r['n'] * r['d']}); "
              f"numerical rank of G {r['numerical_rank_G']}; λ_max(G) = {r['lambda_max']:.3g}, λ = {r['damping']:.3g}, "
              f"cond(K) = {r['cond_K']:.3g}. Training: {tr['steps']} Adam steps in {tr['seconds']:.1f} s, loss "
              f"{tr['loss_before']:.4f} → {tr['loss_after']:.4f}"
              + (f", training accuracy {tr['train_accuracy']:.3f}" if "train_accuracy" in tr else "") + ". "
              f"Precomputation (`gnh_entries()`): {r['precompute_s']:.3g} s; dense G: {r['dense_gnh_s']:.3g} s.", "",
              "### Exact entry against a column", "", "| access | seconds | per entry of G |", "|---|---|---|"]
        for k, v in r["entry_vs_column"].items():
            per = v if "entry (" in k else v / r["N"]
            L.append(f"| {k} | {v:.3g} | {per:.3g} |")
        L += ["", f"### Sampled entries on all {r['sampler'][0]['n']} samples (δ = {DELTA})", "",
              "Error is |Ĝ − G|/√(G_pp G_qq); the bound promises ≤ ε with probability ≥ 1 − δ. "
              "The estimates are taken with `allow_exact=False`, so they sample whenever the draws per mean are "
              "fewer than n; the last column says what `estimate` does by default (`will_sample`): it returns the "
              "exact entries where they are predicted cheaper.", "",
              "| method | ε | draws s | sampled? | median err | 90% err | share ≤ ε | s per entry | exact s per entry "
              "| default |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["sampler"]:
            default = {True: "samples", False: "exact", None: "–"}[x.get("default_samples")]
            L.append(f"| {x['method']} | {x['eps']} | {x['draws']} | {'yes' if x['sampled'] else 'exact'} | "
                     f"{x['median_err']:.3g} | {x['p90_err']:.3g} | {x['within_eps']:.3f} | "
                     f"{x['seconds_per_entry']:.3g} | {x['exact_seconds_per_entry']:.3g} | {default} |")
        L += ["", f"### HODLR of K (leaf size {LEAF})", "",
              "| tol | max rank per level (root first) | stored / N² | entries read / N² | dense blocks | build s | "
              "factor s | ‖K̃−K‖_F/‖K‖_F | ‖(K̃−K)V‖/‖KV‖ | solve rel. error | rel. residual |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["hodlr"]:
            L.append(f"| {x['tol']:g} | {x['max_rank_per_level']} | {x['memory_ratio']:.3f} | "
                     f"{x['entries_read_ratio']:.3f} | {x['dense_blocks']} | {x['build_s']:.3g} | {fmt(x['factor_s'])} | "
                     f"{x['rel_fro_error']:.2e} | {x['rel_matvec_error']:.2e} | {fmt(x['solve_rel_error'])} | "
                     f"{fmt(x['solve_rel_residual'])} |")
        L += ["", "### Solving K x = ∇L", "", "| method | seconds | of which set-up | next right-hand side | "
              "iterations | rel. error |", "|---|---|---|---|---|---|"]
        for x in r["solves"]:
            L.append(f"| {x['method']} | {fmt(x['seconds'])} | {fmt(x.get('setup_s'))} | {fmt(x.get('next_s'))} | "
                     f"{fmt(x['iterations'])} | {fmt(x['rel_error'])} |" + (f" {x['note']}" if "note" in x else ""))
        L.append("")
    return "\n".join(L)


def plots(results: list[dict], stem: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for r in results:
        name = r["setup"]["name"]
        mean = [x for x in r["sampler"] if x["method"] == "mean"]
        axes[0].loglog([x["eps"] for x in mean], [x["p90_err"] for x in mean], "o-", label=f"{name}: 90% error")
        axes[1].loglog([x["eps"] for x in mean], [x["seconds_per_entry"] for x in mean], "o-", label=f"{name}: sampled")
        axes[1].axhline(mean[0]["exact_seconds_per_entry"], ls="--", color=axes[1].lines[-1].get_color(),
                        label=f"{name}: exact")
        h = r["hodlr"]
        axes[2].loglog([x["tol"] for x in h], [x["rel_fro_error"] for x in h], "o-", label=f"{name}: ‖K̃−K‖_F/‖K‖_F")
        axes[2].loglog([x["tol"] for x in h], [x["memory_ratio"] for x in h], "s--", label=f"{name}: stored/N²")
    eps = np.array(EPSILONS)
    axes[0].loglog(eps, eps, "k:", label="ε (the bound at 1 − δ)")
    axes[0].set(xlabel="ε", ylabel="|Ĝ − G| / √(G_pp G_qq)", title="sampled entries: error")
    axes[1].set(xlabel="ε", ylabel="seconds per entry", title="sampled entries: cost")
    axes[2].set(xlabel="tol", title="HODLR: error and memory")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    files.append(str(stem) + "-sampler-hodlr.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4.5), squeeze=False)
    for ax, r in zip(axes[0], results):
        for x in r["solves"]:
            if x["method"].startswith("(reference)") or not np.isfinite(x["seconds"]):
                continue
            err = max(x["rel_error"], 1e-17)
            ax.loglog(x["seconds"], err, "o")
            ax.annotate(x["method"].split(" (")[0].split(", first")[0], (x["seconds"], err), fontsize=7)
        ax.set(xlabel="seconds", ylabel="relative error against the dense solve",
               title=f"{r['setup']['name']}: solving (G + λI) x = ∇L, N = {r['N']}")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    files.append(str(stem) + "-solves.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--machine", default="epyc2c")
    ap.add_argument("--quick", action="store_true", help="small nets and batches: checks the script in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pairs", type=int, default=400, help="random entries in the sampler study")
    ap.add_argument("--damping-ratio", type=float, default=1e-3, help="λ as a multiple of λ_max(G)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS threads (BENCH.md fixes 2)")
    ap.add_argument("--note", default="", help="a sentence for the report's head (e.g. how loaded the machine was)")
    args = ap.parse_args(argv)
    from bench.sysinfo import cpu_model, limit_blas_threads

    threads_how = limit_blas_threads(args.threads)
    X, labels = load_digits()
    date = _dt.date.today().isoformat()
    tag = f"study-digits{'-quick' if args.quick else ''}-{args.machine}-{date}"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / tag
    results = [run_model(s, args.engine, X, labels, args) for s in (QUICK if args.quick else FULL)]
    import scipy

    meta = {"machine": args.machine, "date": date, "command": "python -m bench.study_digits " + shlex.join(sys.argv[1:] if argv is None else argv),
            "pyhessk": hk.__version__, "numpy": np.__version__, "scipy": scipy.__version__, "cpu": cpu_model(),
            "threads": f"{args.threads} ({threads_how})",
            "damping_ratio": args.damping_ratio, "note": args.note}
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float))
    files = plots(results, stem)
    text = markdown(results, meta)
    if files:
        text += "\n" + "\n".join(f"![{Path(f).stem}]({Path(f).name})" for f in files) + "\n"
    stem.with_suffix(".md").write_text(text)
    print(f"wrote {stem}.md, .json" + "".join(f", {Path(f).name}" for f in files))


if __name__ == "__main__":
    main()
