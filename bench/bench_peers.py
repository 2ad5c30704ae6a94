"""pyhessk's engines against the peers of BENCH.md, in one process, interleaved with the GEMM ideal.

One test per (config, peer, engine). It first checks the peer numerically against the engine's own result
on the same θ, X, Y, v (a peer that computes another quantity fails the test: that is a bug in the
benchmark, not a slow peer), then times three callables round-robin (engine, peer, GEMM ideal: A B C A B C
…) with ``timing.interleaved_many``, and stores the engine's cell in the format of ``bench_products`` (so
``report.py`` reads it the same way) plus the peer's time, ratios and cold start.

The pyhessk side of each peer product:

- ``hvp_fresh``: ``hk.hvp(net, θ, X, Y, v)``; ``ggn_fresh``: ``hk.gnvp(net, θ, X, Y, v)``;
- ``hvp_cached`` / ``ggn_cached``: ``c.hvp(v)`` / ``c.gnvp(v)`` on a ``net.linearize`` made outside the call;
- ``ggn_factored``: ``e.gnvp(v)`` on GNH factors (``gnh_entries()``) made outside the call;
- ``hvp_block`` / ``ggn_block``: ``c.hvp(V)`` / ``c.gnvp(V)`` with V of shape (N, k), k = ``cfg.block_k``;
- ``hessian_dense`` (S): ``net.linearize(θ, X, Y).hessian()``, fresh like ``jax.hessian`` (its ideal adds
  the gradient's GEMMs to those of the dense assembly).

Engines: every CPU engine ``hk.available_backends()`` lists (``cuda`` excluded: the peers run on the CPU),
or ``--engine cpp,numpy`` / ``PYHESSK_BENCH_BACKENDS``; a named engine that cannot run is a skipped cell.
Peers: a missing library is a skipped cell (``pip install -e ".[peers]"``; BackPACK and curvlinops by the
``--no-deps`` recipe of bench/README.md).

``pytest bench`` (the engine table's command) skips these tests; they run when this file is named on the
command line (``pytest bench/bench_peers.py``) or with ``PYHESSK_BENCH_PEERS=1``.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import pyhessk as hk

from pyhessk._bench import ideal, timing

from . import peers, sysinfo

pytestmark = [
    # the peers' own deprecation chatter (torch.jit.script in linear_operator, JAX, Inductor) is not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning:torch"),
    pytest.mark.filterwarnings("ignore::UserWarning:jax"),
]

#: engines the peers are compared with by default: every engine that can take NumPy arrays on the CPU
CPU_ENGINES = ("cpp", "numba", "numpy")


def _peers_requested(config: pytest.Config) -> bool:
    env = os.environ.get("PYHESSK_BENCH_PEERS")
    if env is not None:
        return env not in ("", "0")
    return any("bench_peers" in str(a) for a in config.invocation_params.args)


def _engine_params(config: pytest.Config) -> list:
    from pyhessk import _dispatch  # the registry's probe gives the reason an engine cannot run

    opt = config.getoption("--engine", default=None) or os.environ.get("PYHESSK_BENCH_BACKENDS") or "all"
    if opt.strip().lower() == "all":
        names = [e for e in hk.available_backends() if e in CPU_ENGINES] or ["numpy"]
    else:
        names = [s.strip() for s in opt.split(",") if s.strip()]
    out = []
    for name in names:
        engine, reason = _dispatch.probe(name)
        marks = () if engine is not None else (pytest.mark.skip(reason=f"{name}: {reason}"),)
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _engine_params(metafunc.config), indirect=True, scope="session")


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    """The engine under test (overrides conftest's: here every available CPU engine by default)."""
    return request.param


@pytest.fixture(autouse=True)
def _only_when_named(request: pytest.FixtureRequest) -> None:
    if not _peers_requested(request.config):
        pytest.skip("peers run when bench/bench_peers.py is named or PYHESSK_BENCH_PEERS=1 (see bench/README.md)")


_BUILT: dict[tuple[str, str], peers.Built] = {}
_RECENT_CONFIGS: list[str] = []  # the peers of the two configs used last stay built (tests alternate engines)


def built_peer(peer: str, p) -> peers.Built:  # noqa: ANN001
    """The peer built once per config and shared by the engines' tests (one compile, one cold start)."""
    cid = p.cfg.id
    if cid in _RECENT_CONFIGS:
        _RECENT_CONFIGS.remove(cid)
    _RECENT_CONFIGS.append(cid)
    del _RECENT_CONFIGS[:-2]
    for key in [k for k in _BUILT if k[1] not in _RECENT_CONFIGS]:
        del _BUILT[key]
    if (peer, cid) not in _BUILT:
        _BUILT[(peer, cid)] = peers.build(peer, p)
    return _BUILT[(peer, cid)]


_ENTRIES: dict = {}


def _cached_entries(p):  # noqa: ANN001, ANN202
    """The GNH factors of the config on a linearization of their own (one per config and engine)."""
    key = (p.cfg.id, p.net.backend)
    if key not in _ENTRIES:
        _ENTRIES.clear()
        _ENTRIES[key] = p.net.linearize(p.theta, p.X, p.Y).gnh_entries()
    return _ENTRIES[key]


def engine_side(product: str, p, c):  # noqa: ANN001, ANN201
    """(the engine's call, its kernel list for the GEMM ideal, a note) for the pyhessk side of ``product``."""
    cfg, net = p.cfg, p.net
    if product == "hvp_fresh":
        call = lambda: hk.hvp(net, p.theta, p.X, p.Y, p.v)  # noqa: E731
    elif product == "hvp_cached":
        call = lambda: c.hvp(p.v)  # noqa: E731
    elif product == "ggn_fresh":
        call = lambda: hk.gnvp(net, p.theta, p.X, p.Y, p.v)  # noqa: E731
    elif product == "ggn_cached":
        call = lambda: c.gnvp(p.v)  # noqa: E731
    elif product in ("hvp_block", "ggn_block"):
        call = (lambda: c.hvp(p.V)) if product == "hvp_block" else (lambda: c.gnvp(p.V))  # noqa: E731
        k = cfg.block_k
        return call, ideal.kernels_for(product, cfg.sizes, cfg.n, k=k), f"one block product, k = {k}"
    elif product == "ggn_factored":
        e = _cached_entries(p)
        call = lambda: e.gnvp(p.v)  # noqa: E731
        return call, ideal.kernels_for(product, cfg.sizes, cfg.n, k=1), "e.gnvp(v) on factors stored outside the call"
    elif product == "hessian_dense":
        call = lambda: net.linearize(p.theta, p.X, p.Y).hessian()  # noqa: E731
        kernels = ideal.kernels_for("gradient", cfg.sizes, cfg.n) + ideal.kernels_for("hessian_dense", cfg.sizes, cfg.n)
        return call, kernels, "fresh: net.linearize(θ, X, Y).hessian()"
    else:  # pragma: no cover
        raise AssertionError(product)
    return call, ideal.kernels_for(product, cfg.sizes, cfg.n, k=1), ""


@pytest.mark.parametrize("peer", [pytest.param(s.id, id=s.id) for s in peers.PEERS])
def test_peer(benchmark, problem, curv, backend, peer):  # noqa: ANN001
    spec = peers.BY_ID[peer]
    p, cfg = problem, problem.cfg
    if spec.only and cfg.name not in spec.only:
        pytest.skip(f"{peer} runs on {', '.join(spec.only)} only")
    reason = peers.library_available(spec.library)
    if reason is not None:
        pytest.skip(reason)

    call, kernels, engine_note = engine_side(spec.product, p, curv)
    t0 = time.perf_counter()
    ref = np.asarray(call())  # the engine's warm-up call, and the reference of the check
    engine_first_s = time.perf_counter() - t0
    try:
        built = built_peer(peer, p)
    except peers.PeerUnavailable as exc:
        pytest.skip(str(exc))

    # ---- the numerical check, before any timing -------------------------------------------------------
    got = built.to_numpy(built.call())
    agree = peers.agreement(got, ref)
    rtol = peers.RTOL[cfg.dtype]
    if got.dtype != np.dtype(cfg.dtype) or got.size != ref.size or agree["rel_err"] > rtol:
        pytest.fail(f"{peer} on {cfg.id} disagrees with pyhessk[{backend}] {spec.product}: dtype {got.dtype} "
                    f"(want {cfg.dtype}), size {got.size} (want {ref.size}), relative error {agree['rel_err']:.3g} "
                    f"(tolerance {rtol:g}) — the benchmark would time a different quantity")

    # ---- engine, peer and GEMM ideal, interleaved --------------------------------------------------------
    ref_ideal = ideal.Ideal(kernels, dtype=cfg.dtype)
    ref_ideal()
    comp = timing.interleaved_many({"engine": call, "peer": built.call, "ideal": ref_ideal})
    f0 = sysinfo.minor_faults()
    call()
    faults = sysinfo.minor_faults() - f0

    e_ms, q_ms, i_ms = comp.ms["engine"], comp.ms["peer"], comp.ms["ideal"]
    benchmark.group = f"{spec.product} vs peers"
    benchmark.extra_info.update(
        # the engine's cell, as bench_products writes it (product_ms, ideal_ms, ratio, …)
        config=cfg.id,
        config_desc=cfg.describe(),
        product=spec.product,
        dtype=cfg.dtype,
        engine=backend,
        product_ms=e_ms,
        ideal_ms=i_ms,
        ratio=e_ms / i_ms,
        rounds=comp.rounds,
        inner=comp.inner,
        product_round_ms=comp.round_ms["engine"],
        ideal_round_ms=comp.round_ms["ideal"],
        round_ratios=comp.round_ratios("engine", "ideal"),
        ideal_gemms=ideal.gemm_count(kernels),
        ideal_forward_units=ideal.forward_units(kernels, cfg.sizes, cfg.n),
        ideal_flops=ref_ideal.flops,
        gflops=ref_ideal.flops / (e_ms * 1e-3) / 1e9,
        ideal_gflops=ref_ideal.flops / (i_ms * 1e-3) / 1e9,
        kernels=[g.shape_str() for g in kernels],
        page_faults_per_call=faults,
        k=1,
        engine_note=engine_note,
        engine_first_call_s=engine_first_s,
        # the peer
        peer=peer,
        peer_label=spec.label,
        peer_library=spec.library,
        peer_versions=built.versions,
        peer_threads=built.threads,
        peer_note=built.note,
        peer_ms=q_ms,
        peer_round_ms=comp.round_ms["peer"],
        peer_ratio=q_ms / i_ms,
        peer_round_ratios=comp.round_ratios("peer", "ideal"),
        peer_cold_start_s=built.cold_start_s,
        engine_vs_peer=e_ms / q_ms,
        engine_vs_peer_rounds=comp.round_ratios("engine", "peer"),
        check_rel_err=agree["rel_err"],
        check_max_err=agree["max_err"],
        check_rtol=rtol,
    )
    benchmark.pedantic(built.call, rounds=timing.pedantic_rounds(q_ms), iterations=1, warmup_rounds=0)
