"""Fixtures of the benchmark suite: fixed threads, the BENCH.md configs, and the measure-vs-ideal helper.

The allocator is pinned too (``PYHESSK_BENCH_MALLOC``, default "warm"; see ``sysinfo.configure_malloc``).

Threads are fixed to 2 (``PYHESSK_BENCH_THREADS`` overrides) *before* NumPy loads: the environment
variables below are read by OpenBLAS/OpenMP/MKL/Numba when their libraries initialise. If NumPy was
already imported (a plugin loaded it first), threadpoolctl limits the pools at run time when it is
installed, else the bundled OpenBLAS is told directly through its C API. The thread count BLAS
actually uses is recorded in the JSON's ``machine_info``.
"""

from __future__ import annotations

import os
import sys

THREADS = int(os.environ.get("PYHESSK_BENCH_THREADS", "2"))
_NUMPY_PRELOADED = "numpy" in sys.modules

from . import sysinfo  # noqa: E402  (imports no NumPy)

sysinfo.pin_thread_env(THREADS)

import pytest  # noqa: E402  (after the thread variables on purpose)

from . import configs  # noqa: E402

_THREAD_CONTROL = sysinfo.limit_blas_threads(THREADS)
MALLOC = os.environ.get("PYHESSK_BENCH_MALLOC", "warm")
_MALLOC_CONTROL = sysinfo.configure_malloc(MALLOC)


# ---- machine info in the pytest-benchmark JSON -----------------------------------------------------------
def pytest_benchmark_update_machine_info(config, machine_info):  # noqa: ANN001 - pytest hook
    info = sysinfo.collect()
    info["threads_requested"] = THREADS
    info["thread_control"] = _THREAD_CONTROL
    info["numpy_preloaded_before_conftest"] = _NUMPY_PRELOADED
    info["quick_mode"] = configs.QUICK
    info["malloc_mode"] = MALLOC
    info["malloc_control"] = _MALLOC_CONTROL
    machine_info["pyhessk_bench"] = info


def pytest_report_header(config):  # noqa: ANN001 - pytest hook
    blas = sysinfo.blas_threads()
    return [f"pyhessk bench: threads={THREADS} (BLAS reports {blas}; {_THREAD_CONTROL}), quick={configs.QUICK}",
            f"allocator: {_MALLOC_CONTROL}",
            "configs: " + ", ".join(c.id for c in configs.active_configs())]


# ---- options ----------------------------------------------------------------------------------------------
def pytest_addoption(parser):  # noqa: ANN001 - pytest hook
    parser.addoption(
        "--engine", action="store", default=None,
        help="pyhessk engines that bench_peers.py compares with the peers: a comma list or 'all' "
             "(default: PYHESSK_BENCH_BACKENDS when set, else every available CPU engine)")


# ---- fixtures -------------------------------------------------------------------------------------------
def _backends() -> list:
    wanted = [s.strip() for s in os.environ.get("PYHESSK_BENCH_BACKENDS", "numpy").split(",") if s.strip()]
    from pyhessk import _dispatch  # the registry's probe gives the reason an engine cannot run

    out = []
    for name in wanted:
        engine, reason = _dispatch.probe(name)
        marks = () if engine is not None else (pytest.mark.skip(reason=f"{name}: {reason}"),)
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(params=_backends(), scope="session")
def backend(request) -> str:  # noqa: ANN001
    """The engine under test (``PYHESSK_BENCH_BACKENDS=numpy,...``; unavailable ones are skipped with the reason)."""
    return request.param


@pytest.fixture(params=[pytest.param(c, id=c.id) for c in configs.active_configs()], scope="session")
def cfg(request) -> configs.Config:  # noqa: ANN001
    return request.param


_CACHE: dict = {}


def _cached(key: tuple, make):  # noqa: ANN001, ANN202
    if key not in _CACHE:
        if key[0] == "problem":  # keep one config's arrays alive at a time (W's caches are large)
            for k in [k for k in _CACHE if k[1:] != key[1:]]:
                del _CACHE[k]
        _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture
def problem(cfg, backend) -> configs.Problem:  # noqa: ANN001
    """The network, θ, X, Y and direction vectors of the config (built once per config and engine)."""
    return _cached(("problem", backend, cfg.id), lambda: configs.build(cfg, backend))


@pytest.fixture
def curv(problem, backend):  # noqa: ANN001, ANN201
    """``net.linearize(θ, X, Y)`` of the config, made outside every timed call."""
    p = problem
    return _cached(("curv", backend, p.cfg.id), lambda: p.net.linearize(p.theta, p.X, p.Y))


@pytest.fixture
def gnh(curv, problem, backend):  # noqa: ANN001, ANN201
    """The GNH precomputation of the config (``curv.gnh_entries()``), made outside every timed call."""
    # on its own linearization: once factors exist, ``curv.gnvp`` may take the factored route, and
    # bench_products must time the plain one
    p = problem
    return _cached(("gnh", backend, p.cfg.id), lambda: p.net.linearize(p.theta, p.X, p.Y).gnh_entries())
