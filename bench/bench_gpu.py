"""GPU benchmark of the cuda engine against torch.func, torch.compile and JAX on the same GPU, with the cuBLAS
GEMM throughput of the same shapes (issue 5; BENCH.md rules: interleaved rounds, the minimum over rounds of
per-round medians, synchronisation inside every timed call, compiles outside the timed loops).

    python -m bench.bench_gpu                      # configs M, W and G, float32, writes bench/results/gpu-*.{md,json}
    python -m bench.bench_gpu --configs M --rounds 3 --reps 20
    python -m bench.bench_gpu --check-only --device cpu --configs tiny   # peers' correctness on the CPU

Config G is the GPU-sized net of the issue: sizes [4096]*4 + [10], relu, softmax CE, n = 4096.
Columns: pyhessk cached HVP (per path: core / nvrtc), cached GGN product and fresh HVP; torch.func jvp(grad);
torch.compile of it; JAX jit(jvp(grad)) and JAX linearize (cached); the "GEMM ideal" of the cached HVP (its
6 layer-GEMMs per layer, 2 for the first, with their real shapes, back to back in cuBLAS) and the achieved
GEMM throughput. Every peer's HVP is checked against pyhessk's before it is timed. Without a GPU the script
says so and exits 0; under pytest it skips.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

import pyhessk as hk

# JAX takes 75% of the GPU's memory at its first use unless told not to; the other columns need it too.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

try:  # python -m bench.bench_gpu, or the bench/ folder on sys.path (pytest)
    from bench.configs import CONFIGS as BENCH_CONFIGS, Config
except ImportError:  # pragma: no cover
    from configs import CONFIGS as BENCH_CONFIGS, Config


#: M and W of BENCH.md (bench/configs.py), G the GPU-sized net of the issue, and a tiny one for checks
CONFIGS = {
    **{c.name: c for c in BENCH_CONFIGS if c.name in ("M", "W") and c.dtype == "float32"},
    "G": Config("G", (4096, 4096, 4096, 4096, 10), "relu", "softmax_cross_entropy", 4096),
    "tiny": Config("tiny", (5, 7, 6, 3), "tanh", "softmax_cross_entropy", 9),
}


def gpu_reason() -> str | None:
    """None when a GPU and CuPy are usable, else why not."""
    try:
        import cupy
    except ImportError as exc:
        return f"cupy not installed ({exc})"
    from pyhessk.backends.cuda import gpu_status

    ok, why = gpu_status(cupy)
    return None if ok else why


if "pytest" in sys.modules:  # collected by `pytest bench`: nothing to run without a GPU
    import pytest

    _why = gpu_reason()
    if _why is not None:
        pytest.skip(f"the GPU benchmark needs a GPU: {_why}", allow_module_level=True)


# ---- problem data (BENCH.md rules) -----------------------------------------------------------------------
def make_problem(cfg: Config) -> dict[str, Any]:
    net = hk.MLP(list(cfg.sizes), activation=cfg.activation, loss=cfg.loss, backend="numpy")
    theta = net.init(seed=0, dtype=cfg.dtype)
    rng = np.random.default_rng(1234)
    X = rng.standard_normal((cfg.n, cfg.sizes[0])).astype(cfg.dtype)
    y = rng.integers(0, cfg.sizes[-1], cfg.n)
    V = rng.standard_normal(theta.size).astype(cfg.dtype)
    return {"theta": theta, "X": X, "y": y, "V": V, "spec": net.spec}


# ---- timing ----------------------------------------------------------------------------------------------
def interleaved(cands: dict[str, Callable[[], Any]], sync: Callable[[], None], rounds: int, reps: int) -> dict:
    """Min over rounds of the per-round median ms of each candidate, the candidates interleaved per round."""
    per: dict[str, list[float]] = {k: [] for k in cands}
    for _ in range(rounds):
        for name, fn in cands.items():
            times = []
            for _ in range(reps):
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
            per[name].append(statistics.median(times))
    return {k: {"ms": min(v), "round_medians_ms": v} for k, v in per.items()}


# ---- peers -----------------------------------------------------------------------------------------------
def _layers(spec: Any) -> list[tuple[int, int, int, int, int]]:
    return [(w0, b0, end, spec.sizes[l], spec.sizes[l - 1]) for l, (w0, b0, end) in enumerate(spec.offsets, 1)]


def torch_peers(p: dict[str, Any], device: str) -> dict[str, Callable[[], Any]]:
    import torch
    from torch.func import grad, jvp

    spec = p["spec"]
    act = {"tanh": torch.tanh, "relu": torch.relu}[spec.activations[0]]
    th = torch.as_tensor(p["theta"], device=device)
    X = torch.as_tensor(p["X"], device=device)
    y = torch.as_tensor(p["y"], device=device)
    v = torch.as_tensor(p["V"], device=device)
    layers = _layers(spec)

    def objective(t: Any) -> Any:
        a = X
        for i, (w0, b0, end, n_l, n_prev) in enumerate(layers):
            a = a @ t[w0:b0].view(n_l, n_prev).T + t[b0:end]
            if i < len(layers) - 1:
                a = act(a)
        return torch.nn.functional.cross_entropy(a, y)

    def hvp() -> Any:
        return jvp(grad(objective), (th,), (v,))[1]

    out = {"torch.func jvp(grad)": hvp}
    try:
        compiled = torch.compile(lambda: jvp(grad(objective), (th,), (v,))[1])
        compiled()
        out["torch.compile"] = compiled
    except Exception as exc:  # noqa: BLE001 - a compiler failure is a missing column, reported
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"torch.compile unavailable: {why}", file=sys.stderr)
        p["skipped"]["torch.compile"] = why
    return out


def jax_peers(p: dict[str, Any], device: str) -> dict[str, Callable[[], Any]]:
    """JAX's HVPs and cached GGN product in full float32 (matmul precision HIGHEST, as every other column),
    and the same with JAX's default GPU matmul precision (TF32), labelled so."""
    import jax

    out = {}
    for prec, label in ((jax.lax.Precision.HIGHEST, "JAX"), (None, "JAX TF32 (its default)")):
        out.update(_jax_candidates(p, device, prec, label))
    return out


def _jax_candidates(p: dict[str, Any], device: str, prec: Any, label: str) -> dict[str, Callable[[], Any]]:
    import jax
    import jax.numpy as jnp

    devs = [d for d in jax.devices() if (d.platform == "gpu") == (device != "cpu")]
    if not devs:
        raise RuntimeError(f"JAX sees no {device} device")
    dev = devs[0]
    spec = p["spec"]
    act = {"tanh": jnp.tanh, "relu": jax.nn.relu}[spec.activations[0]]
    put = lambda a: jax.device_put(a, dev)  # noqa: E731
    th, X, v = put(p["theta"]), put(p["X"]), put(p["V"])
    onehot = put(np.eye(spec.sizes[-1], dtype=p["theta"].dtype)[p["y"]])
    layers = _layers(spec)

    def output(t: Any) -> Any:
        a = X
        for i, (w0, b0, end, n_l, n_prev) in enumerate(layers):
            a = jnp.matmul(a, t[w0:b0].reshape(n_l, n_prev).T, precision=prec) + t[b0:end]
            if i < len(layers) - 1:
                a = act(a)
        return a

    def head(a: Any) -> Any:
        return jnp.mean(jax.nn.logsumexp(a, axis=1) - jnp.sum(onehot * a, axis=1))

    def objective(t: Any) -> Any:
        return head(output(t))

    fresh = jax.jit(lambda t, u: jax.jvp(jax.grad(objective), (t,), (u,))[1])
    _, lin = jax.linearize(jax.grad(objective), th)
    cached = jax.jit(lin)
    f, jlin = jax.linearize(output, th)  # the GGN from the linearized network: J u, H_out, Jᵀ
    jlin_t = jax.linear_transpose(jlin, th)
    ggn = jax.jit(lambda jl, jt, f, u: jt(jax.jvp(jax.grad(head), (f,), (jl(u),))[1])[0])
    fresh(th, v).block_until_ready()
    cached(v).block_until_ready()
    ggn(jlin, jlin_t, f, v).block_until_ready()
    return {f"{label} jit(jvp(grad))": lambda: fresh(th, v).block_until_ready(),
            f"{label} linearize (cached)": lambda: cached(v).block_until_ready(),
            f"{label} linearize GGN (cached)": lambda: ggn(jlin, jlin_t, f, v).block_until_ready()}


def gemm_ideal(p: dict[str, Any], cupy: Any) -> tuple[Callable[[], Any], float]:
    """The cached HVP's GEMMs (ALGORITHMS.md §10: 6 per layer, 2 for the first) with real shapes, and their flops."""
    spec, n = p["spec"], p["X"].shape[0]
    dt = p["theta"].dtype
    ops = []
    flops = 0.0
    for l in range(1, spec.num_layers + 1):
        n_l, n_prev = spec.sizes[l], spec.sizes[l - 1]
        count = 2 if l == 1 else 6
        for _ in range(count):
            ops.append((cupy.ones((n, n_prev), dt), cupy.ones((n_prev, n_l), dt)))
            flops += 2.0 * n * n_prev * n_l

    def run() -> None:
        for a, b in ops:
            a @ b

    return run, flops


def rel(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ---- the run ---------------------------------------------------------------------------------------------
def run_config(cfg: Config, rounds: int, reps: int, device: str, check_only: bool) -> dict[str, Any]:
    p = make_problem(cfg)
    row: dict[str, Any] = {"config": cfg.name, "sizes": list(cfg.sizes), "activation": cfg.activation,
                           "loss": cfg.loss, "n": cfg.n, "N": int(p["theta"].size), "dtype": cfg.dtype,
                           "checks": {}, "results": {}, "skipped": {}}
    p["skipped"] = row["skipped"]
    ref = hk.MLP(list(cfg.sizes), activation=cfg.activation, loss=cfg.loss, backend="numpy")
    ref_c = ref.linearize(p["theta"].astype(np.float64), p["X"].astype(np.float64), p["y"])
    reference = ref_c.hvp(p["V"].astype(np.float64))
    reference_ggn = ref_c.gnvp(p["V"].astype(np.float64))
    cands: dict[str, Callable[[], Any]] = {}
    if device != "cpu":
        import cupy
        from pyhessk.backends import cuda

        sync = cupy.cuda.get_current_stream().synchronize
        th, X, V = (cupy.asarray(p[k]) for k in ("theta", "X", "V"))
        for path, tf32 in [(path, False) for path in cuda.PATHS] + [("nvrtc", True)]:
            name = f"pyhessk {path}" + (" TF32" if tf32 else "")
            try:
                engine = cuda.make_engine(path, allow_tf32=tf32)
            except RuntimeError as exc:
                row["skipped"][name] = str(exc)
                continue
            net = hk.MLP(list(cfg.sizes), activation=cfg.activation, loss=cfg.loss, backend=engine)
            t0 = time.perf_counter()
            c = net.linearize(th, X, p["y"])
            c.hvp(V), c.gnvp(V)
            sync()
            row[f"cold_start_s {name}"] = time.perf_counter() - t0  # NVRTC compiles land here
            row["checks"][f"{name} HVP"] = rel(cupy.asnumpy(c.hvp(V)), reference)
            cands[f"{name} HVP cached"] = lambda c=c: c.hvp(V)
            if tf32:
                continue
            row["checks"][f"{name} GGN"] = rel(cupy.asnumpy(c.gnvp(V)), reference_ggn)
            cands[f"{name} GGN cached"] = lambda c=c: c.gnvp(V)
            cands[f"{name} HVP fresh"] = lambda net=net: hk.hvp(net, th, X, p["y"], V)
            # the factored GGN product (issue 6) from a second snapshot's stored GNH factors
            t0 = time.perf_counter()
            e = net.linearize(th, X, p["y"]).gnh_entries()
            sync()
            row[f"gnh_precompute_s {name}"] = time.perf_counter() - t0
            row["checks"][f"{name} factored GGN"] = rel(cupy.asnumpy(e.gnvp(V)), reference_ggn)
            cands[f"{name} factored GGN"] = lambda e=e: e.gnvp(V)
        ideal, flops = gemm_ideal(p, cupy)
        ideal()
        cands["cuBLAS GEMM ideal (cached HVP's GEMMs)"] = ideal
        row["gemm_ideal_flops"] = flops
    else:
        sync = lambda: None  # noqa: E731

    for builder, label in ((torch_peers, "torch"), (jax_peers, "jax")):
        try:
            peers = builder(p, "cuda" if device != "cpu" else "cpu")
        except Exception as exc:  # noqa: BLE001 - a missing peer is a skipped column
            row["skipped"][label] = f"{type(exc).__name__}: {exc}"
            continue
        for name, fn in peers.items():
            out = fn()
            host = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
            row["checks"][name] = rel(host, reference_ggn if "GGN" in name else reference)
            cands[name] = fn
    if check_only:
        return row

    def full_sync() -> None:
        sync()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        except ImportError:
            pass

    row["results"] = interleaved(cands, full_sync, rounds, reps)
    if device != "cpu":
        row["host_device_ms"] = host_and_device_ms({k: f for k, f in cands.items() if k.startswith("pyhessk")}, reps)
    ideal_ms = row["results"].get("cuBLAS GEMM ideal (cached HVP's GEMMs)", {}).get("ms")
    if ideal_ms:
        row["gemm_tflops"] = row["gemm_ideal_flops"] / (ideal_ms * 1e-3) / 1e12
        for key, res in row["results"].items():
            if key.startswith("pyhessk") and "HVP cached" in key:
                res["gemm_fraction"] = ideal_ms / res["ms"]  # share of the time that is the GEMM ideal
    return row


def host_and_device_ms(cands: dict[str, Callable[[], Any]], reps: int) -> dict[str, dict[str, float]]:
    """Median host time of one call (issuing its launches) and device time between events around it
    (cupyx.profiler.benchmark): host ≈ device means the GPU waits for the launches (launch-bound); host well
    under device means the GPU's work sets the time."""
    from cupyx.profiler import benchmark

    out = {}
    for name, fn in cands.items():
        res = benchmark(fn, n_repeat=reps, n_warmup=2)
        out[name] = {"host_ms": float(np.median(res.cpu_times)) * 1e3, "device_ms": float(np.median(res.gpu_times)) * 1e3}
    return out


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# pyhessk cuda engine on {meta['device']} ({meta['date']})", "",
             "Median ms of one product (float32, k = 1), min over interleaved rounds of per-round medians; "
             "relative error of each HVP or GGN product against the NumPy engine's in float64 in brackets. "
             "Every column computes in full float32 except the rows marked TF32 (JAX's default GPU matmul "
             "precision; pyhessk's `allow_tf32=True`). \"factored GGN\" is `gnh_entries().gnvp` from the stored "
             "GNH factors (issue 6).", ""]
    names = sorted({k for r in rows for k in r["results"]})
    lines.append("| | " + " | ".join(r["config"] for r in rows) + " |")
    lines.append("|---|" + "---|" * len(rows))
    for name in names:
        cells = []
        for r in rows:
            res = r["results"].get(name)
            chk = next((v for k, v in r["checks"].items() if name.startswith(k)), None)
            cells.append("" if res is None else f"{res['ms']:.3f}" + (f" [{chk:.1e}]" if chk is not None else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| | " + " | ".join(r["config"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    lines.append("| cuBLAS throughput of the GEMM ideal (TFLOP/s) | " +
                 " | ".join(f"{r.get('gemm_tflops', float('nan')):.1f}" for r in rows) + " |")
    for path in ("core", "nvrtc"):
        key = f"pyhessk {path} HVP cached"
        lines.append(f"| GEMM ideal / {key} | " + " | ".join(
            f"{r['results'][key]['gemm_fraction']:.2f}" if key in r["results"] else "" for r in rows) + " |")
    for path in ("core", "nvrtc"):
        fac, plain = f"pyhessk {path} factored GGN", f"pyhessk {path} GGN cached"
        lines.append(f"| {fac} / {plain} | " + " | ".join(
            f"{r['results'][fac]['ms'] / r['results'][plain]['ms']:.2f}"
            if fac in r["results"] and plain in r["results"] else "" for r in rows) + " |")
    profiled = sorted({k for r in rows for k in r.get("host_device_ms", {})})
    if profiled:
        lines += ["", "Host ms (issuing one call) / device ms (events around it), cupyx.profiler.benchmark medians:",
                  "", "| | " + " | ".join(r["config"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
        for name in profiled:
            lines.append(f"| {name} | " + " | ".join(
                "{host_ms:.3f} / {device_ms:.3f}".format(**r["host_device_ms"][name]) if name in r.get("host_device_ms", {})
                else "" for r in rows) + " |")
    lines += ["", "Skipped: " + "; ".join(f"{r['config']} {k}: {v}" for r in rows for k, v in r["skipped"].items())
              if any(r["skipped"] for r in rows) else "", "", "Versions: " + json.dumps(meta["versions"])]
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str]:
    out = {"pyhessk": hk.__version__, "python": platform.python_version(), "numpy": np.__version__}
    for mod in ("cupy", "torch", "jax"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "absent"
    try:
        from pyhessk import _core_cuda

        out["_core_cuda"] = json.dumps(_core_cuda.build_info())
    except ImportError:
        out["_core_cuda"] = "not built"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="M,W,G", help="comma list of " + ",".join(CONFIGS))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: peers only, for --check-only")
    ap.add_argument("--check-only", action="store_true", help="check every candidate's HVP, time nothing")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    if args.device == "cuda":
        why = gpu_reason()
        if why is not None:
            print(f"bench_gpu: no GPU benchmark here: {why}")
            return 0
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if args.check_only:
        rows = [run_config(CONFIGS[c], args.rounds, args.reps, args.device, True) for c in names]
        print(json.dumps([{k: r[k] for k in ("config", "checks", "skipped")} for r in rows], indent=1))
        return 0 if all(v < (5e-2 if "TF32" in k else 1e-3) for r in rows for k, v in r["checks"].items()) else 1
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    meta = {"device": device, "date": _dt.date.today().isoformat(), "versions": versions(),
            "argv": sys.argv, "env": {k: v for k, v in os.environ.items() if k.startswith(("PYHESSK", "XLA_"))}}
    stem = Path(args.out) / f"gpu-{device.replace(' ', '_')}-{meta['date']}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in names:  # the tables are rewritten after each config, so a later failure keeps the earlier rows
        rows.append(run_config(CONFIGS[c], args.rounds, args.reps, args.device, False))
        release_device_memory(cupy)
        stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        stem.with_suffix(".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


def release_device_memory(cupy: Any) -> None:
    """Hand the last config's device memory back (CuPy's and PyTorch's caching pools) before the next one."""
    import gc

    gc.collect()
    cupy.get_default_memory_pool().free_all_blocks()
    try:
        import torch

        torch.cuda.empty_cache()
    except ImportError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
