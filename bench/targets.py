"""The C++ engine's speed targets (issue 3) against the committed result tables: measured value, threshold, met.

Reads the report JSON files that ``bench/report.py`` wrote (nothing is re-measured) and writes one Markdown
table, a row per (target, config):

    python -m bench.targets --machine epyc2c --date 2026-11-22
    # -> bench/results/targets-cpp-<machine>-<date>.md
    python -m bench.targets --date 2026-11-23 --cpp cpp-epyc2c-2026-11-23-b   # a later table of that date

Sources: ``cpp-*`` (ratios to the GEMM ideal, block and entry times), ``peers-*`` (pyhessk / peer from one
interleaved test each) and, when present, ``peers-avx512-*`` (the same with OpenBLAS's AVX-512 kernels).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONFIGS = ("S", "S-f64", "P", "M", "W", "D")


def _cfg(row: dict) -> str:
    name = row["config"]
    return name if row.get("dtype", "float32") == "float32" or name.endswith("-f64") else f"{name}-f64"


def _cells(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["product"], _cfg(r)): r for r in rows}


def _peer(rows: list[dict], product: str, peer: str, engine: str = "cpp") -> dict[str, float]:
    """config → pyhessk / peer for one engine."""
    return {_cfg(r): r["product_ms"] / r["peer_ms"] for r in rows
            if r["product"] == product and r.get("peer") == peer and r.get("engine") == engine}


def _ordered(by_config: dict[str, float]) -> list[tuple[str, float]]:
    return [(cfg, by_config[cfg]) for cfg in CONFIGS if cfg in by_config]


def targets(cpp: dict, peers: dict, avx: dict | None) -> list[tuple[str, str, float, str, bool, str]]:
    """(target, config, measured, threshold text, met, source) rows."""
    c = _cells(cpp["results"])
    out = []

    def add(target: str, cfg: str, value: float, op: str, bound: float, source: str) -> None:
        met = value <= bound if op == "≤" else value >= bound
        out.append((target, cfg, value, f"{op} {bound:g}", met, source))

    for cfg, bound in (("M", 1.15), ("W", 1.15), ("P", 1.5), ("D", 1.5)):
        add("cached HVP / its GEMM ideal", cfg, c["hvp_cached", cfg]["ratio"], "≤", bound, "cpp")
    for cfg in ("M", "W"):
        add("cached GGN product / its GEMM ideal", cfg, c["ggn_cached", cfg]["ratio"], "≤", 1.15, "cpp")
    for cfg in ("M", "W"):
        if ("ggn_cached", cfg) in c:
            add("cached GGN product / cached HVP", cfg, c["ggn_cached", cfg]["product_ms"] / c["hvp_cached", cfg]["product_ms"],
                "≤", 0.7, "cpp")
    for cfg in ("S", "P", "D"):
        blk = c["hvp_block", cfg]
        add("block HVP k = 16, per vector / k = 1", cfg, blk["product_ms"] / blk["k"] / c["hvp_cached", cfg]["product_ms"],
            "≤", 0.5, "cpp")
    ent, gv = c["gnh_entries", "M"], c["ggn_cached", "M"]
    add("GGN product / one exact GNH entry", "M", gv["product_ms"] / (ent["product_ms"] / ent["m"]), "≥", 1000, "cpp")
    for name, data in (("peers", peers), ("peers-avx512", avx)):
        if data is None:
            continue
        rows = data["peers"]
        for cfg, v in _ordered(_peer(rows, "hvp_cached", "jax_linearize_hvp")):
            add("cached HVP / JAX linearize", cfg, v, "≤", 0.25 if cfg == "S" else 1.0, name)
        for cfg, v in _ordered(_peer(rows, "hvp_fresh", "jax_jit_hvp")):
            add("linearize + one HVP / JAX jit(jvp(grad))", cfg, v, "≤", 1.0, name)
        for cfg, v in _ordered(_peer(rows, "hessian_dense", "jax_hessian")):
            add("jax.jit(jax.hessian) / dense Hessian", cfg, 1 / v, "≥", 10, name)
    return out


def render(rows: list, machine: str, date: str, tables: dict[str, str] | None = None) -> str:
    """The Markdown table; ``tables`` names the report a source ("cpp", "peers", "peers-avx512") was read from
    where it is not ``<source>-<machine>-<date>``."""
    tables = tables or {}
    lines = [f"# C++ engine speed targets (issue 3) on {machine}, {date}", "",
             "Computed by `python -m bench.targets` from the committed report JSON (nothing re-measured): "
             "`cpp-*` gives ratios to the GEMM ideal and times of one engine; `peers-*` the ratio pyhessk / peer "
             "from one interleaved test; `peers-avx512-*` the same with OpenBLAS's AVX-512 kernels "
             "(`OPENBLAS_CORETYPE=SkylakeX`; the others ran the environment's `OPENBLAS_CORETYPE=Haswell`). "
             "Where a target is missed, the margin is the measured value over the bound.", "",
             "| target | config | measured | target | met | margin | table |", "|---|---|---|---|---|---|---|"]
    for target, cfg, value, bound, met, source in rows:
        b = float(bound.split()[1])
        margin = "" if met else f"{value / b:.2f}× the bound" if bound.startswith("≤") else f"{b / value:.2f}× short"
        lines.append(f"| {target} | {cfg} | {value:.3g} | {bound} | {'yes' if met else '**no**'} | {margin} | "
                     f"`{tables.get(source, f'{source}-{machine}-{date}')}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("bench/results"))
    ap.add_argument("--machine", default="epyc2c")
    ap.add_argument("--date", required=True)
    for source in ("cpp", "peers", "peers-avx512"):
        ap.add_argument(f"--{source}", metavar="STEM",
                        help=f"the {source} report to read (default: {source}-<machine>-<date>.json)")
    args = ap.parse_args()
    tables = {source: getattr(args, source.replace("-", "_")) or f"{source}-{args.machine}-{args.date}"
              for source in ("cpp", "peers", "peers-avx512")}

    def load(source: str) -> dict | None:
        path = args.results / f"{tables[source]}.json"
        return json.loads(path.read_text()) if path.exists() else None

    cpp, peers = load("cpp"), load("peers")
    if cpp is None or peers is None:
        raise SystemExit(f"need {tables['cpp']}.json and {tables['peers']}.json in {args.results}")
    text = render(targets(cpp, peers, load("peers-avx512")), args.machine, args.date, tables)
    out = args.results / f"targets-cpp-{args.machine}-{args.date}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
