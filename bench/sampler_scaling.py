"""The sampled GNH entry's cost: independent of N, growing like n + d/ε² (SPEC §3, issue 6).

Three sweeps, each timing ``e.estimate`` on m random entries (per-entry time, best of several rounds),
next to the exact entry ``e.entries`` (O(n·d)) on the same entries:

1. N over two orders of magnitude at fixed n, d, ε, δ (hidden width h: N ≈ h² … ), where the sampled
   cost must stay flat;
2. n at fixed architecture and ε: linear in n (building each entry's sampling distribution);
3. ε at fixed n: the draws cost s·d = d/(δε²) (mean) or d·8ln(1/δ)·4/ε² (median of means).

Run:  python -m bench.sampler_scaling --out bench/results [--engine cpp] [--quick]
Writes sampler-scaling-<machine>-<date>.md/.json and a PNG with the three panels.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from pathlib import Path

import numpy as np

import pyhessk as hk

D = 10  # outputs
N_INPUT = 20


def _setup(hidden: int, n: int, engine: str, seed: int = 0):
    net = hk.MLP([N_INPUT, hidden, hidden, D], activation="tanh", loss="softmax_cross_entropy", backend=engine)
    rng = np.random.default_rng(seed)
    theta = net.init(seed=seed)
    X = rng.standard_normal((n, N_INPUT))
    Y = rng.integers(0, D, n)
    c = net.linearize(theta, X, Y)
    return net, c.gnh_entries()


def _per_entry_us(fn, m: int, rounds: int) -> float:
    fn()
    best = np.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6 / m


def measure(hidden: int, n: int, eps: float, delta: float, method: str, engine: str, m: int, rounds: int) -> dict:
    net, e = _setup(hidden, n, engine)
    N = net.num_params
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, N, m), rng.integers(0, N, m)
    groups, s = e._sampling_plan(eps, delta, method)
    sampled = s < n  # the sampler itself is timed (allow_exact=False), whatever estimate would choose
    t_est = _per_entry_us(lambda: e.estimate(rows, cols, eps=eps, delta=delta, seed=0, method=method,
                                             allow_exact=False), m, rounds)
    t_exact = _per_entry_us(lambda: e.entries(rows, cols), m, rounds)
    return {"hidden": hidden, "N": N, "n": n, "d": D, "eps": eps, "delta": delta, "method": method,
            "draws": groups * s, "sampled": sampled, "auto_samples": e.will_sample(eps, delta, method),
            "estimate_us": t_est, "exact_us": t_exact}


def run(engine: str, quick: bool) -> dict:
    m, rounds = (200, 3) if quick else (1000, 5)
    delta = 0.1
    out: dict = {"engine": engine, "m": m, "rounds": rounds, "sweeps": {}}
    widths = (16, 64, 256) if quick else (16, 32, 64, 128, 256, 512)
    out["sweeps"]["N"] = [measure(h, 20000, 0.3, delta, "mean", engine, m, rounds) for h in widths]
    ns = (1000, 4000, 32000) if quick else (500, 1000, 2000, 4000, 8000, 16000, 32000, 64000)
    out["sweeps"]["n"] = [measure(32, n, 0.3, delta, "mean", engine, m, rounds) for n in ns]
    epss = (1.0, 0.5, 0.3) if quick else (1.0, 0.7, 0.5, 0.35, 0.25, 0.18)
    out["sweeps"]["eps"] = [measure(32, 64000, e, delta, meth, engine, m, rounds)
                            for meth in ("mean", "median_of_means") for e in epss]
    return out


def _table(rows: list[dict], key: str) -> list[str]:
    lines = [f"| {key} | N | n | ε | method | draws s | sampled | estimate µs/entry | exact µs/entry | exact/estimate "
             "| `will_sample` |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        auto = r.get("auto_samples")
        lines.append(f"| {r[key] if key != 'eps' else r['eps']:,} | {r['N']:,} | {r['n']:,} | {r['eps']} | {r['method']} | "
                     f"{r['draws']:,} | {'yes' if r['sampled'] else 'no (exact)'} | {r['estimate_us']:.2f} | "
                     f"{r['exact_us']:.2f} | {r['exact_us'] / r['estimate_us']:.1f}× | "
                     f"{'—' if auto is None else ('yes' if auto else 'no: exact')} |")
    return lines


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    sw = res["sweeps"]
    ax = axes[0]
    N = [r["N"] for r in sw["N"]]
    ax.loglog(N, [r["estimate_us"] for r in sw["N"]], "o-", label="sampled (ε = 0.3, δ = 0.1)")
    ax.loglog(N, [r["exact_us"] for r in sw["N"]], "s--", label="exact")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("µs per entry")
    ax.set_title(f"independent of N (n = {sw['N'][0]['n']:,}, d = {D})")
    ax.legend()
    ax = axes[1]
    ns = [r["n"] for r in sw["n"]]
    ax.loglog(ns, [r["estimate_us"] for r in sw["n"]], "o-", label="sampled (ε = 0.3)")
    ax.loglog(ns, [r["exact_us"] for r in sw["n"]], "s--", label="exact (n·d)")
    ref = np.array(ns, dtype=float)
    ax.loglog(ns, sw["n"][0]["estimate_us"] * ref / ref[0], ":", color="gray", label="∝ n")
    ax.set_xlabel("samples n")
    ax.set_title("linear in n")
    ax.legend()
    ax = axes[2]
    for meth, mk in (("mean", "o-"), ("median_of_means", "^-")):
        rows = [r for r in sw["eps"] if r["method"] == meth]
        x = [1 / r["eps"] ** 2 for r in rows]
        ax.loglog(x, [r["estimate_us"] for r in rows], mk, label=f"sampled, {meth.replace('_', ' ')}")
    rows = [r for r in sw["eps"] if r["method"] == "mean"]
    ax.loglog([1 / r["eps"] ** 2 for r in rows], [r["exact_us"] for r in rows], "s--", label="exact")
    ax.set_xlabel("1/ε²")
    ax.set_title(f"n + d/ε² (n = {sw['eps'][0]['n']:,}, δ = {sw['eps'][0]['delta']})")
    ax.legend()
    fig.suptitle(f"pyhessk sampled Gauss–Newton entries, engine {res['engine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--engine", default="cpp")
    ap.add_argument("--machine", default="epyc2c")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    res = run(args.engine, args.quick)
    date = _dt.date.today().isoformat()
    stem = args.out / f"sampler-scaling-{args.machine}-{date}"
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    plot(res, stem.with_suffix(".png"))
    sw = res["sweeps"]
    lines = [f"# Sampled GNH entries: cost against N, n and ε ({args.machine}, {date}, engine {args.engine})", "",
             f"Command: `python -m bench.sampler_scaling --out {args.out} --engine {args.engine}"
             f"{' --quick' if args.quick else ''}`. Per-entry times, best of {res['rounds']} rounds of "
             f"m = {res['m']} random entries; architecture [{N_INPUT}, h, h, {D}] tanh, softmax CE. The timed "
             "estimate always samples (`allow_exact=False`); the last column says what `estimate` does by default, "
             "which returns the exact entries where its cost rule predicts them cheaper.", "",
             f"![three panels]({stem.with_suffix('.png').name})", "",
             "## 1. N over two orders of magnitude (n, d, ε, δ fixed)", "", *_table(sw["N"], "hidden"), "",
             "## 2. n (architecture and ε fixed)", "", *_table(sw["n"], "n"), "",
             "## 3. ε (n fixed), mean and median of means", "", *_table(sw["eps"], "eps"), ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
