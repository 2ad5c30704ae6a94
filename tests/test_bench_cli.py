"""``pyhessk bench``: the sweep runs, and its table, JSON and plot are written (on a tiny plan)."""

from __future__ import annotations

import json

import pytest

from pyhessk import __main__ as cli
from pyhessk._bench import ideal, sweeps


def test_bench_command_writes_table_json_and_plot(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    tiny = {"width": [((4, 8, 8, 3), 16, 1)], "batch": [((4, 8, 8, 3), 32, 1)], "k": [((4, 8, 8, 3), 16, 4)]}
    monkeypatch.setattr(sweeps, "plan", lambda full: tiny)
    cli.main(["bench", "--engines", "numpy", "--out", str(tmp_path), "--machine", "ci", "--quiet"])
    md = next(tmp_path.glob("sweeps-ci-*.md")).read_text()
    assert "| HVP `numpy` |" in md and "| GGN `numpy` |" in md
    res = json.loads(next(tmp_path.glob("sweeps-ci-*.json")).read_text())
    assert {p["sweep"] for p in res["points"]} == {"width", "batch", "k"}
    assert all(p["ms"] > 0 and p["ideal_ms"] > 0 for p in res["points"])
    assert next(tmp_path.glob("sweeps-ci-*.png")).stat().st_size > 0
    assert "block size k" in capsys.readouterr().out


def test_ideal_counts_the_products_gemms():
    """The GEMM ideal of a cached GGN product is 4 GEMMs per layer, 2 for the first (ALGORITHMS §10)."""
    sizes = (5, 7, 6, 3)
    assert ideal.gemm_count(ideal.kernels_for("ggn_cached", sizes, 10)) == 2 + 4 + 4
    assert ideal.gemm_count(ideal.kernels_for("hvp_cached", sizes, 10)) == 2 + 6 + 6
    k = 4
    flops = sum(g.flops for g in ideal.kernels_for("ggn_block", sizes, 10, k=k))
    assert flops == k * sum(g.flops for g in ideal.kernels_for("ggn_cached", sizes, 10))


def test_targets_table_reads_the_committed_results(monkeypatch):
    """bench/targets.py: each row is recomputed from the committed report JSON (ratio, bound, verdict)."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(repo))  # bench/ is not installed with the package
    from bench import targets

    root = repo / "bench" / "results"
    load = lambda stem: json.loads((root / f"{stem}-epyc2c-2026-11-22.json").read_text())  # noqa: E731
    cpp, peers = load("cpp"), load("peers")
    rows = {(t, cfg, src): (v, met) for t, cfg, v, _, met, src in targets.targets(cpp, peers, None)}
    dense = [r for r in peers["peers"] if r["product"] == "hessian_dense" and r["peer"] == "jax_hessian"
             and r["engine"] == "cpp" and r["config"] == "S"][0]
    v, met = rows["jax.jit(jax.hessian) / dense Hessian", "S", "peers"]
    assert v == pytest.approx(dense["peer_ms"] / dense["product_ms"]) and met == (v >= 10)
    hvp = [r for r in cpp["results"] if r["product"] == "hvp_cached" and r["config"] == "M"][0]
    assert rows["cached HVP / its GEMM ideal", "M", "cpp"] == (hvp["ratio"], hvp["ratio"] <= 1.15)
    assert "| cached HVP / its GEMM ideal | M |" in targets.render(targets.targets(cpp, peers, None), "epyc2c", "d")
