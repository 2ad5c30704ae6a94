"""Entrywise Gauss–Newton Hessian (SPEC §3) on the BENCH.md configs: precomputation, exact reads, sampler.

The exact reads (entries, block, column, diagonal) and the sampler use one precomputation made outside
the timed call. Index sets are drawn uniformly over the N parameters from a fixed seed.
``ggn_factored`` (k = 1) and ``ggn_factored_block`` (k = ``block_k``) are the Gauss–Newton products taken
from the stored factors (``e.gnvp``), to set against ``ggn_cached`` and ``ggn_block`` of bench_products.

Sampler settings: the default ``eps=0.05, delta=0.01`` needs s = ⌈1/(δε²)⌉ = 40,000 samples, more than
every config's batch (n ≤ 4,096), so the library returns exact entries there (``gnh_estimate_default``).
``gnh_estimate_sampled`` uses ``eps=0.25, delta=0.1`` and ``allow_exact=False``: s = 160 < n on every config, so it
truly samples (by default ``estimate`` would return exact entries at these n, which are cheaper there).
"""

from __future__ import annotations

import numpy as np
import pytest

from pyhessk._bench import ideal
from .harness import measure

N_ENTRIES = 1000  # entries per call of entries() / estimate()
BLOCK = 64  # |I| = |J| of block()
ESTIMATE_SETTINGS = {"gnh_estimate_default": (0.05, 0.01), "gnh_estimate_sampled": (0.25, 0.1)}
INDEX_SEED = 7

PRODUCTS = (
    "gnh_precompute",
    "gnh_entries",
    "gnh_block",
    "gnh_column",
    "gnh_diagonal",
    "gnh_estimate_default",
    "gnh_estimate_sampled",
    "ggn_factored",
    "ggn_factored_block",
)


@pytest.mark.parametrize("product", PRODUCTS)
def test_gnh(benchmark, problem, curv, gnh, product):  # noqa: ANN001
    p, cfg, e = problem, problem.cfg, gnh
    N = p.net.num_params
    rng = np.random.default_rng(INDEX_SEED)
    rows = rng.integers(0, N, size=N_ENTRIES)
    cols = rng.integers(0, N, size=N_ENTRIES)
    extra: dict = {}
    if product == "gnh_precompute":
        own = p.net.linearize(p.theta, p.X, p.Y)  # not ``curv``: its gnvp must stay on the plain route

        def call():  # noqa: ANN202
            own._entries = None  # Curvature caches its GnhEntries; drop the cache so the precomputation runs
            return own.gnh_entries()

        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n)
    elif product == "gnh_entries":
        call = lambda: e.entries(rows, cols)  # noqa: E731
        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n, m=N_ENTRIES)
        extra["m"] = N_ENTRIES
    elif product == "gnh_block":
        I = np.sort(rng.choice(N, size=BLOCK, replace=False))  # noqa: E741
        J = np.sort(rng.choice(N, size=BLOCK, replace=False))
        call = lambda: e.block(I, J)  # noqa: E731
        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n, bi=BLOCK, bj=BLOCK)
        extra["block"] = f"{BLOCK}x{BLOCK}"
    elif product == "gnh_column":
        j = int(rng.integers(0, N))
        call = lambda: e.column(j)  # noqa: E731
        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n, m=1)
    elif product == "gnh_diagonal":
        call = e.diagonal
        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n)
    elif product in ESTIMATE_SETTINGS:
        eps, delta = ESTIMATE_SETTINGS[product]
        s = ideal.num_samples(eps, delta)
        # the sampled row forces sampling: at these n the library itself would return exact entries
        # (``will_sample`` is False: n is below ~30 s), which this row exists to compare against
        force = product == "gnh_estimate_sampled"
        sampled = s < cfg.n if force else e.will_sample(eps, delta)
        call = lambda: e.estimate(rows, cols, eps=eps, delta=delta, seed=0, allow_exact=not force)  # noqa: E731
        kernels = ideal.kernels_for("gnh_estimate", cfg.sizes, cfg.n, m=N_ENTRIES, s=s, sampled=sampled)
        extra.update(m=N_ENTRIES, eps=eps, delta=delta, s=s, sampled=sampled, auto_samples=e.will_sample(eps, delta))
    elif product in ("ggn_factored", "ggn_factored_block"):
        # G·V from the factors alone (issue 6); compare with ggn_cached / ggn_block of bench_products
        k = 1 if product == "ggn_factored" else cfg.block_k
        V = p.v if k == 1 else p.V
        call = lambda: e.gnvp(V)  # noqa: E731
        kernels = ideal.kernels_for(product, cfg.sizes, cfg.n, k=k)
        extra["k"] = k
    else:  # pragma: no cover
        raise AssertionError(product)
    comp = measure(benchmark, p, product, call, kernels, **extra)
    if "m" in extra:
        benchmark.extra_info["per_entry_us"] = comp.product_ms * 1e3 / extra["m"]
