"""Turn pytest-benchmark JSON into the results table (Markdown) and the raw numbers (JSON).

    python -m bench.report RUN.json [MORE.json ...] [--engine numpy] [--machine epyc2c] [--outdir bench/results]

writes ``<outdir>/<engine>-<machine>-<date>.md`` and ``.json``. Rows are products, columns the BENCH.md
configs, cells "ms (ratio× ideal)". Several input files are merged (a later file wins for a repeated
cell), so a config can be re-run on its own and added.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.configs import COLUMN_ORDER, CONFIGS  # noqa: E402

ROWS: tuple[tuple[str, str], ...] = (
    ("forward", "forward"),
    ("gradient", "gradient (`linearize`: forward + backward)"),
    ("hvp_cached", "HVP, cached (`c.hvp(v)`)"),
    ("hvp_fresh", "HVP, fresh (`hk.hvp`)"),
    ("ggn_cached", "GGN product, cached (`c.gnvp(v)`)"),
    ("ggn_fresh", "GGN product, fresh (`hk.gnvp`)"),
    ("hvp_block", "block HVP, k = 16 (W: k = 4)"),
    ("ggn_block", "block GGN product, k = 16 (W: k = 4)"),
    ("hessian_dense", "dense Hessian (`c.hessian()`, S only)"),
    ("gnh_precompute", "GNH precomputation (`c.gnh_entries()`)"),
    ("gnh_entries", "GNH exact entries, 1000 (per entry)"),
    ("gnh_block", "GNH block 64 × 64"),
    ("gnh_column", "GNH column (one j)"),
    ("gnh_diagonal", "GNH diagonal"),
    ("gnh_estimate_default", "GNH `estimate`, ε = 0.05, δ = 0.01 (s = 40,000 ≥ n: exact), per entry"),
    ("gnh_estimate_sampled", "GNH `estimate`, ε = 0.25, δ = 0.1 (s = 160 < n: sampled), per entry"),
)
PER_ENTRY = {"gnh_entries", "gnh_estimate_default", "gnh_estimate_sampled"}
STREAMING = PER_ENTRY  # rows whose reference is a streaming floor, not GEMMs
NOISE_FLAG = 0.20  # † when the median per-round ratio differs from the headline ratio by more than this


def load(paths: list[str]) -> tuple[dict, dict[tuple[str, str], dict]]:
    machine: dict = {}
    cells: dict[tuple[str, str], dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        machine = machine or data.get("machine_info", {})
        for b in data["benchmarks"]:
            e = b.get("extra_info", {})
            if "product" not in e:
                continue
            stats = b.get("stats", {})
            cell = dict(e)
            cell["median_round_ratio"] = _median(e.get("round_ratios") or [e["ratio"]])
            cell["pytest_benchmark"] = {k: stats.get(k) for k in ("min", "median", "mean", "stddev", "rounds")}
            cell["test"] = b.get("fullname", b.get("name"))
            cell["source"] = str(path)
            cells[(e["product"], e["config"])] = cell
    return machine, cells


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def _ms(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _us(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}"


def _flag(cell: dict) -> str:
    r, mr = cell["ratio"], cell["median_round_ratio"]
    return "†" if abs(mr - r) > NOISE_FLAG * r else ""


def fmt_cell(product: str, cell: dict | None) -> str:
    if cell is None:
        return ""
    ratio = f"{cell['ratio']:.2f}×{_flag(cell)}"
    if product in PER_ENTRY:
        return f"{_us(cell['product_ms'] * 1e3 / cell['m'])} µs ({ratio})"
    return f"{_ms(cell['product_ms'])} ({ratio})"


def machine_name(info: dict) -> str:
    model = info.get("cpu_model", "cpu")
    skip = {"amd", "intel", "intel(r)", "core(tm)", "cpu", "processor", "genuine", "(r)", "(tm)"}
    tokens = [t for t in re.split(r"[\s@]+", model) if t and t.lower() not in skip]
    base = re.sub(r"[^a-z0-9]", "", (tokens[0] if tokens else "cpu").lower())
    return f"{base}{info.get('cores_available', '')}c"


def columns(cells: dict) -> list[str]:
    present = {c for _, c in cells}
    return [c for c in COLUMN_ORDER if c in present]


def render(machine: dict, cells: dict, engine: str, command: str) -> str:
    info = machine.get("pyhessk_bench", {})
    blas = info.get("blas", {})
    cols = columns(cells)
    desc = {c.id: c.describe() for c in CONFIGS}
    lines = [
        f"# pyhessk benchmarks: `{engine}` engine, {info.get('cpu_model', '?')} "
        f"({info.get('cores_available', '?')} cores), {info.get('date', '?')}",
        "",
        f"- **Machine**: {info.get('cpu_model', '?')}, {info.get('cores_available', '?')} cores available "
        f"({', '.join(info.get('cpu_flags', []))}); {info.get('platform', '')}",
        f"- **Threads**: {info.get('threads_requested', '?')} (BLAS reports {info.get('blas_threads', '?')}; "
        f"{info.get('thread_control', '?')})",
        f"- **Allocator**: {info.get('malloc_control', '?')} (`PYHESSK_BENCH_MALLOC`, see bench/README.md)",
        f"- **Versions**: Python {info.get('python', '?')}, NumPy {info.get('numpy', '?')}, "
        f"SciPy {info.get('scipy', '?')}, "
        f"BLAS {blas.get('name', '?')} {blas.get('version', '')} (`{blas.get('config', '')}`), "
        f"pyhessk {info.get('pyhessk', '?')}, pytest-benchmark {info.get('pytest_benchmark', '?')}"
        + (f", threadpoolctl {info['threadpoolctl']}" if info.get("threadpoolctl") else ""),
        f"- **Command**: `{command}`",
        "- **Method** (BENCH.md): each product runs once untimed, then interleaved with its GEMM ideal "
        "(A B A B …) in 5 rounds of ~0.4 s (up to 9 when the rounds disagree by more than 30%); a time is the "
        "minimum over rounds of the per-round medians, and the ratio is product / ideal of those two numbers. "
        f"† marks a cell whose median per-round ratio differs from it by more than {NOISE_FLAG:.0%} "
        "(the machine moved during that measurement; see the JSON).",
        "",
        "## Configurations",
        "",
        "| id | network, loss, batch, parameters, dtype |",
        "|---|---|",
    ]
    lines += [f"| {c} | {desc.get(c, '')} |" for c in cols]
    lines += [
        "",
        "## Time of one call in ms (ratio to its GEMM ideal)",
        "",
        "Per-entry rows give µs per entry (1000 entries per call); their reference is a streaming floor, not GEMMs.",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for product, label in ROWS:
        if not any((product, c) in cells for c in cols):
            continue
        lines.append(f"| {label} | " + " | ".join(fmt_cell(product, cells.get((product, c))) for c in cols) + " |")
    lines += [
        "",
        "## The references themselves: GEMM ideal in ms [GEMMs in the list, flops in forward-GEMM units]",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for product, label in ROWS:
        if not any((product, c) in cells for c in cols):
            continue
        row = []
        for c in cols:
            cell = cells.get((product, c))
            row.append("" if cell is None else
                       f"{_ms(cell['ideal_ms'])} [{cell['ideal_gemms']}, {cell['ideal_forward_units']:.2f}]")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Notes:",
        "- The GEMM ideal of a product is exactly the GEMMs it needs (ALGORITHMS.md §10), with their real "
        "batch-major shapes, on preallocated operands of the product's dtype, run back to back with "
        "`np.matmul(a, b, out=c)`: forward 1 per layer; gradient 3 (first layer 2); cached HVP 6 (first 2); "
        "fresh HVP 9 (first 3); cached GGN 4 (first 2); fresh GGN 5 (first 3); a block of k vectors uses the same "
        "GEMMs with k-times larger operands; the dense Hessian is block HVPs over the column chunks "
        "`c.hessian()` uses; the GNH precomputation is one (n·d, n_{l+1}) @ (n_{l+1}, n_l) GEMM per layer "
        "l < L; a GNH block one (|I|, n·d) @ (n·d, |J|) GEMM; the GNH diagonal one (n_l, n) @ (n, n_{l−1}) "
        "GEMM per layer; a GNH column one batched (1, d) @ (d, n_l) product per sample and one "
        "(n_l, n) @ (n, n_{l−1}) GEMM per layer. See `bench/ideal.py`.",
        "- Streaming floors (entries, estimate): the m dot products of length n·d (exact), or m of length n "
        "(sampling weights) plus m of length s·d (sampled terms), on factors already gathered into contiguous rows.",
        "- The ratio counts everything a product does besides those GEMMs: elementwise work, copies, "
        "reductions, validation and Python overhead. Below 1 would mean the ideal is wrong (or noise).",
    ]
    return "\n".join(lines) + "\n"


def render_compare(cells: dict, other: dict, label: str, other_machine: dict) -> str:
    """A section comparing a second run (e.g. another allocator mode) with the main one, product by product."""
    cols = [c for c in columns(cells) if any(k[1] == c for k in other)]
    info = other_machine.get("pyhessk_bench", {})
    lines = [
        "",
        f"## {label}",
        "",
        f"Second run: allocator `{info.get('malloc_control', '?')}`; cells are that run's ms "
        "(its ratio to its own GEMM ideal): its time over the main table's time.",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for product, row_label in ROWS:
        if not any((product, c) in other for c in cols):
            continue
        row = []
        for c in cols:
            a, b = other.get((product, c)), cells.get((product, c))
            if a is None or b is None:
                row.append("")
                continue
            row.append(f"{fmt_cell(product, a)}: {a['product_ms'] / b['product_ms']:.2f}× main")
        lines.append(f"| {row_label} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def raw(machine: dict, cells: dict, engine: str, command: str) -> dict:
    return {
        "engine": engine,
        "command": command,
        "machine": machine.get("pyhessk_bench", {}),
        "pytest_benchmark_machine_info": {k: v for k, v in machine.items() if k != "pyhessk_bench"},
        "results": [cells[k] for k in sorted(cells, key=lambda k: (k[1], k[0]))],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("inputs", nargs="+", help="pytest-benchmark JSON files (--benchmark-json=...)")
    ap.add_argument("--engine", default="numpy")
    ap.add_argument("--machine", default=None, help="short machine name (default: from the CPU model and cores)")
    ap.add_argument("--outdir", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--command", default="pytest bench --benchmark-only --benchmark-json=RUN.json",
                    help="the command that produced the inputs, for the header")
    ap.add_argument("--compare", nargs="*", default=[], help="JSON of a second run to compare product by product")
    ap.add_argument("--compare-label", default="Second run")
    args = ap.parse_args(argv)
    machine, cells = load(args.inputs)
    if not cells:
        print("no pyhessk benchmark results in the inputs", file=sys.stderr)
        return 1
    info = machine.get("pyhessk_bench", {})
    name = f"{args.engine}-{args.machine or machine_name(info)}-{info.get('date', 'undated')}"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    text = render(machine, cells, args.engine, args.command)
    data = raw(machine, cells, args.engine, args.command)
    if args.compare:
        other_machine, other = load(args.compare)
        text += render_compare(cells, other, args.compare_label, other_machine)
        data["compare"] = {"label": args.compare_label, "machine": other_machine.get("pyhessk_bench", {}),
                           "results": [other[k] for k in sorted(other, key=lambda k: (k[1], k[0]))]}
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out / name}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
