"""``pyhessk bench``: cached Hessian and Gauss–Newton products against their GEMM ideal, swept over the
hidden width, the batch size and the block size k, on every engine that can run here.

Each point times the engine's product and the product's GEMM ideal (exactly its GEMMs, run back to back
with NumPy's BLAS: ``ideal.py``) interleaved in the same process (``timing.py``), so the ratio
product / ideal is how much the engine adds to the unavoidable GEMM time. The short version (the
default) takes well under a minute; ``--full`` is the one committed under ``bench/results/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from . import ideal, timing

PRODUCTS = {"hvp": ("hvp_cached", "hvp_block"), "ggn": ("ggn_cached", "ggn_block")}


def _point(engine: str, sizes: tuple[int, ...], n: int, k: int, product: str, dtype: str, rounds: int) -> dict:
    import pyhessk as hk

    net = hk.MLP(list(sizes), activation="tanh", loss="softmax_cross_entropy", backend=engine)
    rng = np.random.default_rng(0)
    theta = net.init(seed=0, dtype=dtype)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = rng.integers(0, sizes[-1], n)
    c = net.linearize(theta, X, Y)
    V = rng.standard_normal((net.num_params, k)).astype(dtype) if k > 1 else rng.standard_normal(net.num_params).astype(dtype)
    call = (lambda: c.hvp(V)) if product == "hvp" else (lambda: c.gnvp(V))
    kind = PRODUCTS[product][0 if k == 1 else 1]
    ref = ideal.Ideal(ideal.kernels_for(kind, sizes, n, k=k), dtype=dtype)
    call(), ref()
    comp = timing.interleaved(call, ref, rounds=rounds)
    return {"engine": engine, "sizes": list(sizes), "n": n, "k": k, "product": product, "dtype": dtype,
            "ms": comp.product_ms, "ideal_ms": comp.ideal_ms, "ratio": comp.ratio,
            "per_vector_ms": comp.product_ms / k}


def plan(full: bool) -> dict[str, list[tuple[tuple[int, ...], int, int]]]:
    """(sizes, n, k) per sweep: width, batch and block size around [64, 256, 256, 10] with n = 256."""
    widths = (32, 64, 128, 256, 512, 1024) if full else (64, 256, 1024)
    batches = (32, 128, 512, 2048, 8192) if full else (64, 512, 4096)
    ks = (1, 4, 16, 64)
    base, n0 = (64, 256, 256, 10), 256
    return {
        "width": [((64, h, h, 10), n0, 1) for h in widths],
        "batch": [(base, n, 1) for n in batches],
        "k": [(base, n0, k) for k in ks],
    }


def run(engines: list[str] | None = None, full: bool = False, dtype: str = "float32", progress: bool = True) -> dict:
    import pyhessk as hk

    engines = [e for e in (engines or hk.available_backends()) if e != "cuda"]
    rounds = 5 if full else 2
    points = []
    for sweep, pts in plan(full).items():
        for sizes, n, k in pts:
            for product in PRODUCTS:
                for engine in engines:
                    row = _point(engine, sizes, n, k, product, dtype, rounds)
                    row["sweep"] = sweep
                    points.append(row)
                    if progress:
                        print(f"  {sweep:5s} {product} {engine:6s} sizes={list(sizes)} n={n} k={k}: "
                              f"{row['ms']:.3f} ms ({row['ratio']:.2f}× ideal)", flush=True)
    return {"engines": engines, "dtype": dtype, "full": full, "date": _dt.date.today().isoformat(),
            "machine": platform.processor() or platform.machine(), "points": points}


def table(res: dict) -> str:
    """Markdown: one table per sweep, ms per call with the ratio to the GEMM ideal, per engine."""
    out = []
    titles = {"width": "hidden width h of [64, h, h, 10], n = 256, k = 1",
              "batch": "batch size n of [64, 256, 256, 10], k = 1",
              "k": "block size k of [64, 256, 256, 10], n = 256 (ms per call; per vector in brackets)"}
    for sweep, title in titles.items():
        rows = [p for p in res["points"] if p["sweep"] == sweep]
        if not rows:
            continue
        key = {"width": lambda p: p["sizes"][1], "batch": lambda p: p["n"], "k": lambda p: p["k"]}[sweep]
        xs = sorted({key(p) for p in rows})
        out += [f"### {title}", "", "| product, engine | " + " | ".join(f"{x:,}" for x in xs) + " |",
                "|---" * (len(xs) + 1) + "|"]
        for product in PRODUCTS:
            for engine in res["engines"]:
                cells = []
                for x in xs:
                    p = next((p for p in rows if key(p) == x and p["product"] == product and p["engine"] == engine), None)
                    if p is None:
                        cells.append("")
                        continue
                    extra = f" [{p['per_vector_ms']:.3g}]" if sweep == "k" else ""
                    cells.append(f"{p['ms']:.3g}{extra} ({p['ratio']:.2f}×)")
                out.append(f"| {product.upper()} `{engine}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def plot(res: dict, path: Path) -> None:
    """Three panels: time vs width, vs batch size, per-vector time vs k; dashed: the GEMM ideal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    keys = {"width": ("hidden width h", lambda p: p["sizes"][1], "ms"),
            "batch": ("batch size n", lambda p: p["n"], "ms"),
            "k": ("block size k", lambda p: p["k"], "per_vector_ms")}
    for ax, (sweep, (label, key, field)) in zip(axes, keys.items()):
        rows = [p for p in res["points"] if p["sweep"] == sweep]
        for product, marker in (("hvp", "o"), ("ggn", "s")):
            for engine in res["engines"]:
                pts = sorted((key(p), p[field]) for p in rows if p["product"] == product and p["engine"] == engine)
                if pts:
                    ax.loglog(*zip(*pts), marker + "-", label=f"{product.upper()} {engine}")
            ideal_pts = sorted({(key(p), p["ideal_ms"] / (p["k"] if field == "per_vector_ms" else 1))
                                for p in rows if p["product"] == product})
            if ideal_pts:
                ax.loglog(*zip(*ideal_pts), marker + ":", color="gray", alpha=0.7, label=f"{product.upper()} GEMM ideal")
        ax.set_xlabel(label)
        ax.set_ylabel("ms per vector" if field == "per_vector_ms" else "ms per call")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"pyhessk cached products vs the GEMM ideal ({res['dtype']}, {res['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write(res: dict, out: Path, machine: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sweeps-{machine}-{res['date']}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1))
    plot(res, stem.with_suffix(".png"))
    cmd = "pyhessk bench" + (" --full" if res["full"] else "") + f" --out {out} --machine {machine}"
    stem.with_suffix(".md").write_text("\n".join([
        f"# pyhessk cached products against the GEMM ideal: sweeps ({machine}, {res['date']})", "",
        f"Command: `{cmd}`. Engines: {', '.join(f'`{e}`' for e in res['engines'])}; {res['dtype']}; "
        "tanh, softmax cross-entropy. Each cell: ms per call (ratio to the GEMM ideal of the same product, "
        "timed interleaved with it in the same process).", "",
        f"![sweeps]({stem.with_suffix('.png').name})", "", table(res)]))
    return stem.with_suffix(".md")


def main(args: Any) -> None:
    engines = [e.strip() for e in args.engines.split(",")] if args.engines else None
    res = run(engines, full=args.full, progress=not args.quiet)
    print(table(res))
    if args.out:
        print(f"wrote {write(res, Path(args.out), args.machine)}")
