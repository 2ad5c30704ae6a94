"""The factored Gauss–Newton product against the plain one, timed in the same rounds (issue 6).

For each BENCH.md config and k (one vector, and the config's block), three calls run round-robin
(A B C A B C …, ``interleaved_many``), so the machine's drift cancels in their ratios:

- plain: ``c.gnvp(V)`` on a linearization without GNH factors (R-forward, H_out, GN backward);
- factored: ``e.gnvp(V)``, the route ``factored_gnvp_plan`` picks for the engine (hidden layers before a
  narrow one carried through W_{l+1}, the others contracted with their factor S_l);
- contracted: the same product with every layer contracted with S_l (no layer carried).

The table also gives the GEMM-flop floor of factored ÷ plain: the ratio of the two routes' GEMM flops alone
(ALGORITHMS §4.4), below which no implementation of the factored route can go, since the first layer costs
the same two GEMMs on both.

Run:  python -m bench.factored_routes --out bench/results [--engine cpp] [--configs M,W]
Writes factored-routes-<engine>-<machine>-<date>.md and .json.
"""

from __future__ import annotations

import os
import sys

from . import sysinfo  # imports no NumPy

THREADS = int(os.environ.get("PYHESSK_BENCH_THREADS", "2"))
sysinfo.pin_thread_env(THREADS)

import argparse  # noqa: E402  (after the thread variables on purpose, as in conftest.py)
import datetime as _dt  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from pyhessk._bench.timing import interleaved_many  # noqa: E402
from pyhessk._blasinfo import blas_report, describe  # noqa: E402
from pyhessk.curvature import blas_flops_per_byte  # noqa: E402

from . import configs  # noqa: E402


def gemm_flops(sizes: tuple[int, ...], n: int, k: int, carry: tuple[bool, ...] | None) -> tuple[float, float]:
    """(factored, plain) GEMM flops of one product on k vectors; carry None: every layer contracted."""
    prods = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    plain = 2 * n * k * (2 * prods[0] + 4 * sum(prods[1:]))
    carried = sum(4 * n * k * sizes[l] * sizes[l + 1] for l in range(1, len(sizes) - 1) if carry and carry[l - 1])
    return 2 * n * k * 2 * sum(prods) + carried, plain


def measure(cfg: configs.Config, engine: str) -> list[dict]:
    p = configs.build(cfg, engine)
    plain_c = p.net.linearize(p.theta, p.X, p.Y)  # never gets factors: its gnvp is the plain product
    c = p.net.linearize(p.theta, p.X, p.Y)
    e = c.gnh_entries()
    rows = []
    for k in (1, cfg.block_k):
        V = np.ascontiguousarray(p.V[:, :k]) if k > 1 else p.v
        carry, fac_cost, plain_cost = e._plan(k)  # the route and prices e.gnvp and c.gnvp use
        Vb = V.reshape(-1, k)
        calls = {
            "plain": lambda V=V: plain_c.gnvp(V),
            "factored": lambda V=V: e.gnvp(V),
            "contracted": lambda Vb=Vb: c._engine.gnh_gnvp(e._fac, Vb, None),
        }
        ref = plain_c.gnvp(V).reshape(-1, k)
        errs = {name: float(np.linalg.norm(np.asarray(f()).reshape(-1, k) - ref) / np.linalg.norm(ref))
                for name, f in calls.items()}
        res = interleaved_many(calls)
        fac_flops, plain_flops = gemm_flops(cfg.sizes, cfg.n, k, carry)
        con_flops, _ = gemm_flops(cfg.sizes, cfg.n, k, None)
        rows.append({
            "config": cfg.id, "desc": cfg.describe(), "k": k,
            "carried": [l for l in range(1, len(cfg.sizes)) if carry[l - 1]],
            "ms": res.ms, "round_ms": res.round_ms, "rounds": res.rounds, "inner": res.inner,
            "factored_over_plain": res.ratio("factored", "plain"),
            "factored_over_plain_rounds": res.round_ratios("factored", "plain"),
            "contracted_over_plain": res.ratio("contracted", "plain"),
            "gemm_floor": fac_flops / plain_flops, "gemm_floor_contracted": con_flops / plain_flops,
            "c_gnvp_takes": "factored" if fac_cost < plain_cost else "plain",
            "pass_cost": c._engine.factor_pass_cost,
            "rel_err_vs_plain": errs,
        })
        print(f"{cfg.id} k={k}: " + ", ".join(f"{n} {t:.3f} ms" for n, t in res.ms.items())
              + f"; factored/plain {rows[-1]['factored_over_plain']:.3f} (floor {rows[-1]['gemm_floor']:.3f})",
              flush=True)
    return rows


def table(rows: list[dict]) -> list[str]:
    out = ["| config | k | carried layers | plain ms | factored ms | factored ÷ plain (rounds: min–max) | GEMM floor "
           "| every layer contracted: ms, ÷ plain | its GEMM floor | `c.gnvp` takes |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rr = r["factored_over_plain_rounds"]
        carried = ", ".join(map(str, r["carried"])) or "none"
        out.append(f"| {r['config']} | {r['k']} | {carried} | {r['ms']['plain']:.3g} | {r['ms']['factored']:.3g} "
                   f"| **{r['factored_over_plain']:.3f}** ({min(rr):.2f}–{max(rr):.2f}) | {r['gemm_floor']:.3f} "
                   f"| {r['ms']['contracted']:.3g}, {r['contracted_over_plain']:.3f} | {r['gemm_floor_contracted']:.3f} "
                   f"| {r['c_gnvp_takes']} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--engine", default="cpp")
    ap.add_argument("--machine", default="epyc2c")
    ap.add_argument("--configs", default="", help="a comma list of config ids (default: all)")
    args = ap.parse_args()
    control = sysinfo.limit_blas_threads(THREADS)
    malloc = sysinfo.configure_malloc(os.environ.get("PYHESSK_BENCH_MALLOC", "warm"))
    wanted = {s.strip() for s in args.configs.split(",") if s.strip()}
    rows = [r for cfg in configs.CONFIGS if not wanted or cfg.id in wanted for r in measure(cfg, args.engine)]
    date = _dt.date.today().isoformat()
    stem = args.out / f"factored-routes-{args.engine}-{args.machine}-{date}"
    args.out.mkdir(parents=True, exist_ok=True)
    info = sysinfo.collect()
    blas = blas_report()
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    command = (f"OPENBLAS_CORETYPE={coretype} " if coretype else "") + "python -m bench.factored_routes " + " ".join(
        sys.argv[1:])
    stem.with_suffix(".json").write_text(json.dumps({"machine": info, "threads": THREADS, "thread_control": control,
                                                     "malloc": malloc, "command": command, "blas": blas,
                                                     "flops_per_byte": blas_flops_per_byte(), "rows": rows},
                                                    indent=1))
    lines = [f"# Factored ÷ plain Gauss–Newton product, engine `{args.engine}` ({args.machine}, {date})", "",
             f"- **Command**: `{command}`",
             f"- **Machine**: {info.get('cpu_model', '?')}, {THREADS} threads ({control}); allocator: {malloc}",
             f"- **BLAS**: {describe(blas)}; the route model prices a streamed byte at {blas_flops_per_byte():g} "
             f"GEMM flops (`blas_flops_per_byte`) and this engine's passes over the factors at "
             f"{rows[0]['pass_cost']:g}× the C++ kernels' (`factor_pass_cost`), which decides the last column "
             "(`c.gnvp` takes the factored route when it predicts it faster)",
             "- **Method**: the three products of one row run round-robin in the same rounds (`interleaved_many`: "
             "each time is the minimum over rounds of the per-round medians), so their ratio is not moved by the "
             "machine's drift between tests; the range is that of the per-round ratios. Float32 except S-f64. "
             "Every result is checked against the plain product (relative error in the JSON). Each call follows "
             "the previous one of the round (plain, factored, contracted, plain, …), so it starts with the caches "
             "the previous call left; the contracted row calls the engine directly, without `e.gnvp`'s argument "
             "checks.",
             "- **GEMM floor**: the factored route's GEMM flops over the plain product's (first layer 2 GEMMs on "
             "both routes, every other layer 2 instead of 4, plus a carried layer's 2 with W_{l+1}).", "",
             *table(rows), ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
