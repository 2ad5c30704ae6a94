"""Turn pytest-benchmark JSON into the results table (Markdown) and the raw numbers (JSON).

    python -m bench.report RUN.json [MORE.json ...] [--engine numpy] [--machine epyc2c] [--outdir bench/results]

writes ``<outdir>/<engine>-<machine>-<date>.md`` and ``.json``. Rows are products, columns the BENCH.md
configs, cells "ms (ratio× ideal)". Several input files are merged (a later file wins for a repeated
cell), so a config can be re-run on its own and added.

Results of ``bench_peers.py`` (they carry a ``peer`` key) go to their own section: pyhessk's best engine
against the fastest peer per product and config, every peer's time and ratios, cold starts and the
numerical check. A run of only the peers makes a report of only that section.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
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
    ("gnh_estimate_sampled", "GNH `estimate`, ε = 0.25, δ = 0.1, `allow_exact=False` (s = 160 < n: sampled), per entry"),
    ("ggn_factored", "GGN product from the GNH factors (`e.gnvp(v)`)"),
    ("ggn_factored_block", "block GGN product from the GNH factors, k = 16 (W: k = 4)"),
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
            if "product" not in e or "peer" in e:  # peer comparisons: load_peers()
                continue
            stats = b.get("stats", {})
            cell = dict(e)
            cell["median_round_ratio"] = _median(e.get("round_ratios") or [e["ratio"]])
            cell["pytest_benchmark"] = {k: stats.get(k) for k in ("min", "median", "mean", "stddev", "rounds")}
            cell["test"] = b.get("fullname", b.get("name"))
            cell["source"] = str(path)
            cells[(e["product"], e["config"])] = cell
    return machine, cells


def load_peers(paths: list[str]) -> tuple[dict, dict[tuple[str, str, str, str], dict]]:
    """The cells of bench_peers.py, keyed (product, config, peer, engine); a later file wins."""
    machine: dict = {}
    cells: dict[tuple[str, str, str, str], dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        machine = machine or data.get("machine_info", {})
        for b in data["benchmarks"]:
            e = b.get("extra_info", {})
            if "peer" not in e:
                continue
            cell = dict(e)
            cell["median_round_ratio"] = _median(e.get("round_ratios") or [e["ratio"]])
            cell["median_engine_vs_peer"] = _median(e.get("engine_vs_peer_rounds") or [e["engine_vs_peer"]])
            cell["test"] = b.get("fullname", b.get("name"))
            cell["source"] = str(path)
            cells[(e["product"], e["config"], e["peer"], e["engine"])] = cell
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
    present = {k[1] for k in cells}
    return [c for c in COLUMN_ORDER if c in present]


def _core(blas: dict) -> str:
    """The kernels the BLAS ran, as ``, core SkylakeX (OPENBLAS_CORETYPE=SkylakeX)``; empty for older runs."""
    if "core" not in blas:
        return ""
    env = blas.get("coretype_env")
    return f", core {blas['core']} ({f'OPENBLAS_CORETYPE={env}' if env else 'OPENBLAS_CORETYPE unset'})"


def render(machine: dict, cells: dict, engine: str, command: str, peers: dict | None = None) -> str:
    info = machine.get("pyhessk_bench", {})
    blas = info.get("blas", {})
    peers = peers or {}
    cols = columns({**cells, **{k[:2]: v for k, v in peers.items()}})
    desc = {c.id: c.describe() for c in CONFIGS}
    title = f"pyhessk benchmarks: `{engine}` engine" if cells else "pyhessk against the peers"
    lines = [
        f"# {title}, {info.get('cpu_model', '?')} "
        f"({info.get('cores_available', '?')} cores), {info.get('date', '?')}",
        "",
        f"- **Machine**: {info.get('cpu_model', '?')}, {info.get('cores_available', '?')} cores available "
        f"({', '.join(info.get('cpu_flags', []))}); {info.get('platform', '')}",
        f"- **Threads**: {info.get('threads_requested', '?')} (BLAS reports {info.get('blas_threads', '?')}; "
        f"{info.get('thread_control', '?')})",
        f"- **Allocator**: {info.get('malloc_control', '?')} (`PYHESSK_BENCH_MALLOC`, see bench/README.md)",
        f"- **Versions**: Python {info.get('python', '?')}, NumPy {info.get('numpy', '?')}, "
        f"SciPy {info.get('scipy', '?')}, "
        f"BLAS {blas.get('name', '?')} {blas.get('version', '')} (`{blas.get('config', '')}`){_core(blas)}, "
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
    if peers:
        lines += render_peers(peers, cols).splitlines()
    if not cells:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "## Time of one call in ms (ratio to its GEMM ideal)",
        "",
        "Per-entry rows give µs per entry (1000 entries per call); their reference is a streaming floor, not GEMMs.",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    lines += _product_rows(cells, cols, lambda product, c: fmt_cell(product, cells.get((product, c))))
    lines += [
        "",
        "## The references themselves: GEMM ideal in ms [GEMMs in the list, flops in forward-GEMM units]",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def ideal_cell(product: str, c: str) -> str:
        cell = cells.get((product, c))
        return "" if cell is None else f"{_ms(cell['ideal_ms'])} [{cell['ideal_gemms']}, {cell['ideal_forward_units']:.2f}]"

    lines += _product_rows(cells, cols, ideal_cell)
    lines += [
        "",
        "Notes:",
        "- The GEMM ideal of a product is exactly the GEMMs it needs (ALGORITHMS.md §10), with their real "
        "batch-major shapes, on preallocated operands of the product's dtype, run back to back with "
        "`np.matmul(a, b, out=c)`: forward 1 per layer; gradient 3 (first layer 2); cached HVP 6 (first 2); "
        "fresh HVP 8 (first 3: no weight gradient); cached GGN 4 (first 2); fresh GGN 5 (first 3); a block of k vectors uses the same "
        "GEMMs with k-times larger operands; the dense Hessian is the GEMMs of its assembly from per-sample "
        "terms (per block (l, m) one (ñ_{l−1}·n_m, n) @ (n, ñ_{m−1}) GEMM per unit of layer l, plus the per-sample "
        "recursions); the GNH precomputation is one (n·d, n_{l+1}) @ (n_{l+1}, n_l) GEMM per layer "
        "l < L; a GNH block one (|I|, n·d) @ (n·d, |J|) GEMM; the GNH diagonal one (n_l, n) @ (n, n_{l−1}) "
        "GEMM per layer; a GNH column one batched (1, d) @ (d, n_l) product per sample and one "
        "(n_l, n) @ (n, n_{l−1}) GEMM per layer. See `pyhessk/_bench/ideal.py`.",
        "- Streaming floors (entries, estimate): the m dot products of length n·d (exact), or m of length n "
        "(sampling weights) plus m of length s·d (sampled terms), on factors already gathered into contiguous rows.",
        "- The ratio counts everything a product does besides those GEMMs: elementwise work, copies, "
        "reductions, validation and Python overhead. Below 1 would mean the ideal is wrong (or noise).",
    ]
    return "\n".join(lines) + "\n"


PEER_ROWS: tuple[tuple[str, str], ...] = (
    ("hvp_fresh", "HVP, fresh: `hk.hvp` vs peers that redo the forward pass every call"),
    ("hvp_cached", "HVP, cached: `c.hvp(v)` after `net.linearize` vs peers that keep a linearization or graph"),
    ("ggn_fresh", "GGN product, fresh: `hk.gnvp` vs peers that redo the forward pass"),
    ("ggn_cached", "GGN product, cached: `c.gnvp(v)` vs peers that keep the forward graph"),
    ("ggn_factored", "GGN product from the GNH factors: `e.gnvp(v)` vs JAX with the network linearized once"),
    ("hvp_block", "block HVP, k = 16 (W: 4): `c.hvp(V)` vs JAX's linearized HVP under `vmap`"),
    ("ggn_block", "block GGN product, k = 16 (W: 4): `c.gnvp(V)` vs JAX's linearized GGN under `vmap`"),
    ("hessian_dense", "dense Hessian of S: `net.linearize(θ, X, Y).hessian()` vs peers"),
)


def _peer_short(peer: str, cell: dict) -> str:
    from bench.peers import BY_ID  # labels only: importing bench.peers loads no peer library

    spec = BY_ID.get(peer)
    return spec.short if spec is not None else cell.get("peer_label", peer)


def _x(r: float) -> str:
    """A time ratio with two significant digits at least (0.0042×, 0.31×, 2.65×, 12.4×)."""
    if r >= 10:
        return f"{r:.1f}×"
    if r >= 0.1:
        return f"{r:.2f}×"
    return f"{r:.2g}×"


def _vs_flag(cell: dict) -> str:
    r, mr = cell["engine_vs_peer"], cell["median_engine_vs_peer"]
    return "†" if abs(mr - r) > NOISE_FLAG * r else ""


def _peer_versions(peers: dict) -> str:
    found: dict[str, str] = {}
    for cell in peers.values():
        found.update(cell.get("peer_versions", {}))
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items())) or "?"


def _peer_threads(peers: dict) -> str:
    torch_t: dict = {}
    xla_t: dict = {}
    for cell in peers.values():
        t = cell.get("peer_threads", {})
        torch_t = torch_t or t.get("torch", {})
        xla_t = xla_t or t.get("xla", {})
    parts = []
    if torch_t:
        parts.append(f"torch {torch_t.get('num_threads')} intra-op / {torch_t.get('num_interop_threads')} inter-op "
                     f"(`torch.set_num_threads`), OMP_WAIT_POLICY={torch_t.get('OMP_WAIT_POLICY') or 'unset'}")
    if xla_t:
        parts.append(f"XLA_FLAGS=`{xla_t.get('XLA_FLAGS')}`, NPROC={xla_t.get('NPROC')}, "
                     f"{xla_t.get('cpus_allowed')} CPUs in the affinity mask")
    return "; ".join(parts) or "?"


def render_peers(peers: dict, cols: list[str]) -> str:
    """The peer section: summary (best engine vs fastest peer), every peer, cold starts and the check."""
    engines = sorted({k[3] for k in peers})
    lines = [
        "",
        "## pyhessk against the peers (one run, interleaved)",
        "",
        f"- **Peers**: {_peer_versions(peers)}",
        f"- **Peer threads**: {_peer_threads(peers)}",
        f"- **Engines**: {', '.join(f'`{e}`' for e in engines)}",
        "- **Method**: one test per (config, peer, engine). The peer is first checked against the engine's "
        "own result on the same θ, X, Y, v (relative 2-norm error at most 1e-4 in float32, 1e-9 in float64; "
        "a peer outside it fails the run). Then engine, peer and the GEMM ideal run round-robin (A B C A B C …) "
        "in rounds, as above; each time is the minimum over rounds of the per-round medians, and "
        "pyhessk / peer is the quotient of the two times of that same test. JIT and `torch.compile` compiles "
        "happen in the untimed setup (cold start, below). † marks a pyhessk / peer ratio whose median over the "
        f"rounds differs from it by more than {NOISE_FLAG:.0%}.",
        "",
        "### pyhessk's best engine against the fastest peer: time ratio pyhessk / peer (below 1: pyhessk is faster)",
        "",
        "| product | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for product, label in PEER_ROWS:
        if not any(k[0] == product for k in peers):
            continue
        row = []
        for c in cols:
            group = {k: v for k, v in peers.items() if k[0] == product and k[1] == c}
            if not group:
                row.append("")
                continue
            fastest = min(group.values(), key=lambda x: x["peer_ms"])["peer"]
            best = min((v for k, v in group.items() if k[2] == fastest), key=lambda x: x["engine_vs_peer"])
            row.append(f"`{best['engine']}` {_ms(best['product_ms'])} ms vs {_peer_short(fastest, best)} "
                       f"{_ms(best['peer_ms'])} ms: **{_x(best['engine_vs_peer'])}**{_vs_flag(best)}")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += [
        "",
        "### Every implementation: ms of one call (ratio to the GEMM ideal); after a peer, pyhessk / peer per engine",
        "",
        "A pyhessk row is the engine's best time over the tests of that product (each test times it against one "
        "peer); the GEMM ideal is that of the pyhessk product (`pyhessk/_bench/ideal.py`), the same reference for the peers.",
        "",
        "| product, implementation | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    from bench.peers import PEERS  # the row order

    for product, label in PEER_ROWS:
        group = {k: v for k, v in peers.items() if k[0] == product}
        if not group:
            continue
        lines.append(f"| **{label.split(':')[0]}** |" + " |" * len(cols))
        for eng in engines:
            row = []
            for c in cols:
                mine = [v for k, v in group.items() if k[1] == c and k[3] == eng]
                best = min(mine, key=lambda x: x["product_ms"]) if mine else None
                row.append("" if best is None else f"{_ms(best['product_ms'])} ({best['ratio']:.2f}×{_flag(best)})")
            lines.append(f"| pyhessk `{eng}` | " + " | ".join(row) + " |")
        ids = [s.id for s in PEERS if s.product == product] + sorted({k[2] for k in group} - {s.id for s in PEERS})
        for peer in ids:
            if not any(k[2] == peer for k in group):
                continue
            row, label_p = [], None
            for c in cols:
                mine = {k[3]: v for k, v in group.items() if k[1] == c and k[2] == peer}
                if not mine:
                    row.append("")
                    continue
                fast = min(mine.values(), key=lambda x: x["peer_ms"])
                label_p = label_p or fast.get("peer_label", peer)
                vs = ", ".join(f"`{e}` {_x(v['engine_vs_peer'])}{_vs_flag(v)}" for e, v in sorted(mine.items()))
                row.append(f"{_ms(fast['peer_ms'])} ({_x(fast['peer_ratio'])}) · {vs}")
            lines.append(f"| {label_p or peer} | " + " | ".join(row) + " |")
    lines += [
        "",
        "### Cold start (s: setup + first call, compiles included) and the check (relative 2-norm error vs pyhessk)",
        "",
        "| peer | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for spec in PEERS:
        group = {k: v for k, v in peers.items() if k[2] == spec.id}
        if not group:
            continue
        row = []
        for c in cols:
            mine = [v for k, v in group.items() if k[1] == c]
            if not mine:
                row.append("")
                continue
            cold = min(v["peer_cold_start_s"] for v in mine)
            err = max(v["check_rel_err"] for v in mine)
            row.append(f"{cold:.2f} s; {err:.1e}")
        lines.append(f"| {spec.label} | " + " | ".join(row) + " |")
    for eng in engines:
        row = []
        for c in cols:
            mine = [v for k, v in peers.items() if k[1] == c and k[3] == eng and "engine_first_call_s" in v]
            row.append(f"{max(v['engine_first_call_s'] for v in mine):.3f} s" if mine else "")
        lines.append(f"| pyhessk `{eng}`, first call of a product (slowest) | " + " | ".join(row) + " |")
    notes = sorted({f"{v.get('peer_label', k[2])}: {v['peer_note']}" for k, v in peers.items() if v.get("peer_note")})
    lines += ["", "Notes:"] + [f"- {n}" for n in notes] + [
        "- mse is SPEC's ½‖f − y‖² averaged over samples in every peer; curvlinops only takes torch's "
        "`MSELoss(mean)` (which divides by n·d and drops the ½), so it gets v scaled by d/2 outside the call.",
        "- fresh pyhessk products (`hk.hvp`, `hk.gnvp`, the dense Hessian with its `linearize`) recompute "
        "everything per call, like the fresh peers; cached ones reuse one `net.linearize` made outside the call.",
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

    def compare_cell(product: str, c: str) -> str:
        a, b = other.get((product, c)), cells.get((product, c))
        if a is None or b is None:
            return ""
        return f"{fmt_cell(product, a)}: {a['product_ms'] / b['product_ms']:.2f}× main"

    lines += _product_rows(other, cols, compare_cell)
    return "\n".join(lines) + "\n"


def _product_rows(have: dict, cols: list[str], cell: Callable[[str, str], str]) -> list[str]:
    """One Markdown row per product of ROWS that ``have`` holds in any of ``cols``, cells from ``cell``."""
    return [f"| {label} | " + " | ".join(cell(product, c) for c in cols) + " |"
            for product, label in ROWS if any((product, c) in have for c in cols)]


def raw(machine: dict, cells: dict, engine: str, command: str, peers: dict | None = None) -> dict:
    out = {
        "engine": engine,
        "command": command,
        "machine": machine.get("pyhessk_bench", {}),
        "pytest_benchmark_machine_info": {k: v for k, v in machine.items() if k != "pyhessk_bench"},
        "results": [cells[k] for k in sorted(cells, key=lambda k: (k[1], k[0]))],
    }
    if peers:
        out["peers"] = [peers[k] for k in sorted(peers, key=lambda k: (k[1], k[0], k[2], k[3]))]
    return out


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
    peer_machine, peers = load_peers(args.inputs)
    machine = machine or peer_machine
    if not cells and not peers:
        print("no pyhessk benchmark results in the inputs", file=sys.stderr)
        return 1
    info = machine.get("pyhessk_bench", {})
    name = f"{args.engine}-{args.machine or machine_name(info)}-{info.get('date', 'undated')}"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    text = render(machine, cells, args.engine, args.command, peers)
    data = raw(machine, cells, args.engine, args.command, peers)
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
