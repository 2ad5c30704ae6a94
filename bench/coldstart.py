"""Cold start of a compiled engine: what the first call of each operation costs in a fresh process.

    python -m bench.coldstart [--engine numba] [--machine epyc2c] [--outdir bench/results] [--processes 2]

Each process is a new interpreter that imports pyhessk, builds config S (float32, then float64: the Numba
engine compiles once per dtype) and calls every operation once, timing each first call, then times the
same call again warm. All processes share one empty ``NUMBA_CACHE_DIR`` made for the run: the first
process compiles (cache miss) and writes the cache, the second loads it (cache hit). Threads are fixed to
2 as in the benchmark suite. Writes ``<outdir>/<engine>-coldstart-<machine>-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
OPERATIONS = ("forward", "linearize", "hvp", "gnvp", "jvp", "vjp", "gnh_precompute", "gnh_entries", "gnh_block",
              "gnh_column", "gnh_diagonal", "gnh_estimate")


def _time_operations(p: object) -> dict:
    """First-call and warm (minimum of 5) times in ms of every operation on the built config ``p``."""
    import numpy as np

    net, th, X, Y, cfg = p.net, p.theta, p.X, p.Y, p.cfg
    N, n, d = net.num_params, cfg.n, cfg.d
    U = np.ones((n, d, 2), dtype=th.dtype)
    rows = np.arange(0, N, 13)
    cols = (N - 1 - rows) % N
    state: dict = {}

    def linearize() -> None:
        state["c"] = net.linearize(th, X, Y)

    def precompute() -> None:
        state["c"]._entries = None
        state["e"] = state["c"].gnh_entries()

    calls = {
        "forward": lambda: net.forward(th, X),
        "linearize": linearize,
        "hvp": lambda: state["c"].hvp(p.V),
        "gnvp": lambda: state["c"].gnvp(p.V),
        "jvp": lambda: state["c"].jvp(p.V),
        "vjp": lambda: state["c"].vjp(U),
        "gnh_precompute": precompute,
        "gnh_entries": lambda: state["e"].entries(rows, cols),
        "gnh_block": lambda: state["e"].block(rows[:16], cols[:16]),
        "gnh_column": lambda: state["e"].column(7),
        "gnh_diagonal": lambda: state["e"].diagonal(),
        "gnh_estimate": lambda: state["e"].estimate(rows, cols, eps=0.25, delta=0.1, seed=0, allow_exact=False),  # s = 160 < n
    }
    first, warm = {}, {}
    for name in OPERATIONS:
        t = time.perf_counter()
        calls[name]()
        first[name] = (time.perf_counter() - t) * 1e3
    for name in OPERATIONS:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            calls[name]()
            best = min(best, time.perf_counter() - t)
        warm[name] = best * 1e3
    return {"first_ms": first, "warm_ms": warm}


def _child(engine: str) -> dict:
    """Runs in the fresh process: first-call and warm times (ms) of every operation, per dtype."""
    t0 = time.perf_counter()
    import pyhessk as hk
    from bench import configs, sysinfo

    sysinfo.configure_malloc("warm")  # the warm column as in the benchmark suite (no page faults per call)
    hk.MLP([2, 1], backend=engine)  # the probe imports the engine (and numba)
    out: dict = {"import_ms": (time.perf_counter() - t0) * 1e3, "dtypes": {}}
    for cfg in (c for c in configs.CONFIGS if c.name == "S"):
        out["dtypes"][cfg.dtype] = _time_operations(configs.build(cfg, engine))
    if engine == "numba":
        from pyhessk.backends.numba import _gnh, _passes

        hits = misses = 0
        for mod in (_passes, _gnh):
            for v in vars(mod).values():
                stats = getattr(v, "stats", None)
                if stats is not None and hasattr(stats, "cache_hits"):
                    hits += sum(stats.cache_hits.values())
                    misses += sum(stats.cache_misses.values())
        out["numba_cache"] = {"hits": hits, "misses": misses}
    out["total_ms"] = (time.perf_counter() - t0) * 1e3
    return out


def _run(engine: str, cache_dir: str, threads: int) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, **{v: str(threads) for v in THREAD_VARS})
    root = Path(__file__).resolve().parents[1]
    code = f"import json, bench.coldstart as c; print('RESULT', json.dumps(c._child({engine!r})))"
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - t) * 1e3
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    data = json.loads(line[len("RESULT "):])
    data["process_wall_ms"] = wall
    return data


def _fmt(ms: float) -> str:
    return f"{ms / 1e3:.2f} s" if ms >= 1000 else f"{ms:.3g} ms"


def render(engine: str, info: dict, runs: list[dict], command: str) -> str:
    labels = ["first process (empty cache: compiles)"] + [f"process {i + 1} (cache hit)" for i in range(1, len(runs))]
    lines = [
        f"# pyhessk cold start: `{engine}` engine, {info.get('cpu_model', '?')} ({info.get('cores_available', '?')} cores), "
        f"{info.get('date', '?')}",
        "",
        f"- **Command**: `{command}`",
        f"- **Versions**: Python {info.get('python')}, NumPy {info.get('numpy')}, SciPy {info.get('scipy')}, "
        f"numba {info.get('numba')}, pyhessk {info.get('pyhessk')}",
        "- **Method**: each process is a new interpreter; it imports pyhessk and the engine, builds config S "
        "([10, 32, 32, 1] tanh mse, n = 256) in float32 and then float64, and calls each operation once (the "
        "first call: compilation or cache load, plus the call itself), then 5 more times (warm, minimum). All "
        "processes share one `NUMBA_CACHE_DIR`, empty before the first. 2 threads; allocator `warm` (bench/README.md).",
        "",
        "## Totals",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(runs),
        "| process wall time (start to exit) | " + " | ".join(_fmt(r["process_wall_ms"]) for r in runs) + " |",
        "| import pyhessk + engine | " + " | ".join(_fmt(r["import_ms"]) for r in runs) + " |",
    ]
    for dt in runs[0]["dtypes"]:
        tot = [sum(r["dtypes"][dt]["first_ms"].values()) for r in runs]
        lines.append(f"| first calls of every operation, {dt} | " + " | ".join(_fmt(t) for t in tot) + " |")
    if "numba_cache" in runs[0]:
        lines.append("| Numba cache hits / misses (entry points) | " + " | ".join(
            f"{r['numba_cache']['hits']} / {r['numba_cache']['misses']}" for r in runs) + " |")
    for dt in runs[0]["dtypes"]:
        lines += ["", f"## First call of each operation, {dt} (warm call for reference)", "",
                  "| operation | " + " | ".join(labels) + " | warm call |", "|---|" + "---|" * (len(runs) + 1)]
        for op in OPERATIONS:
            cells = [_fmt(r["dtypes"][dt]["first_ms"][op]) for r in runs]
            lines.append(f"| {op} | " + " | ".join(cells) + f" | {_fmt(runs[-1]['dtypes'][dt]['warm_ms'][op])} |")
    lines += ["", "Notes:", "- An operation's first call includes compiling (or loading from the cache) every "
              "compiled function it is the first to use; later operations reuse what earlier ones compiled.",
              "- Nothing is compiled at import; a dtype's functions are compiled on first use of that dtype."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="numba")
    ap.add_argument("--machine", default=None)
    ap.add_argument("--outdir", default="bench/results")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from bench import sysinfo

    info = sysinfo.collect()
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    with tempfile.TemporaryDirectory(prefix="pyhessk-numba-cache-") as cache:
        runs = [_run(args.engine, cache, args.threads) for _ in range(args.processes)]
    if args.machine:
        machine = args.machine
    else:
        from bench.report import machine_name

        machine = machine_name(info)
    command = "python -m bench.coldstart " + " ".join(argv if argv is not None else sys.argv[1:])
    name = f"{args.engine}-coldstart-{machine}-{info['date']}"
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(render(args.engine, info, runs, command.strip()))
    (out / f"{name}.json").write_text(json.dumps({"engine": args.engine, "machine": info, "command": command.strip(),
                                                  "runs": runs}, indent=1) + "\n")
    print(f"wrote {out / name}.md and .json")


if __name__ == "__main__":
    main()
