"""The one measurement every benchmark makes: a product against its GEMM ideal, interleaved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pyhessk._bench import ideal, timing

from . import sysinfo
from .configs import Problem


def measure(benchmark: Any, p: Problem, product: str, call: Callable[[], object], kernels: Sequence[ideal.Kernel],
            **extra: Any) -> timing.Comparison:
    """Warm up once (untimed), time ``call`` against the ideal of ``kernels`` interleaved, record everything in
    ``benchmark.extra_info``, then let ``benchmark.pedantic`` time ``call`` alone for pytest-benchmark's columns.

    ``benchmark.group`` is the product name; ``gflops`` is the ideal's flops (the FLOP model of the
    product's GEMMs) over the product's time, ``ideal_gflops`` the same over the ideal's time.
    """
    cfg = p.cfg
    ref = ideal.Ideal(kernels, dtype=cfg.dtype)
    call()  # the one untimed warm-up (allocator, page faults; JIT/NVRTC for compiled engines)
    ref()
    comp = timing.interleaved(call, ref)
    f0 = sysinfo.minor_faults()
    call()
    faults = sysinfo.minor_faults() - f0
    benchmark.group = product
    benchmark.extra_info.update(
        config=cfg.id,
        config_desc=cfg.describe(),
        product=product,
        dtype=cfg.dtype,
        product_ms=comp.product_ms,
        ideal_ms=comp.ideal_ms,
        ratio=comp.ratio,
        rounds=comp.rounds,
        inner=comp.inner,
        product_round_ms=comp.product_round_ms,
        ideal_round_ms=comp.ideal_round_ms,
        round_ratios=comp.round_ratios,
        ideal_gemms=ideal.gemm_count(kernels),
        ideal_forward_units=ideal.forward_units(kernels, cfg.sizes, cfg.n),
        ideal_flops=ref.flops,
        gflops=ref.flops / (comp.product_ms * 1e-3) / 1e9,
        ideal_gflops=ref.flops / (comp.ideal_ms * 1e-3) / 1e9,
        kernels=[g.shape_str() for g in kernels],
        page_faults_per_call=faults,
        **extra,
    )
    benchmark.pedantic(call, rounds=timing.pedantic_rounds(comp.product_ms), iterations=1, warmup_rounds=0)
    return comp
