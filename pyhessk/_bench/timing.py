"""Interleaved timing of a product against its reference (BENCH.md rules).

The product A and its ideal B run alternately in the same process (A B A B …) in ``rounds`` rounds of
``inner`` pairs each. Each side's time is the minimum over rounds of the per-round medians; the ratio is
the quotient of those two numbers. The per-round ratios are kept too: their spread shows how much the
machine moved during the measurement. This VM has slow spells of seconds in which a 2-thread GEMM takes
up to 50× longer; when the round medians of either side spread by more than ``NOISY``, more rounds run
(up to ``MAX_ROUNDS``), so that the minimum has a better chance to come from a clean round.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

QUICK = os.environ.get("PYHESSK_BENCH_QUICK", "0") not in ("", "0")

#: rounds of the interleaved comparison, and the wall time one round aims at (seconds)
ROUNDS = 2 if QUICK else 5
#: up to this many rounds when the first ROUNDS disagree (a side's round medians spread by more than NOISY)
MAX_ROUNDS = 2 if QUICK else 9
NOISY = 1.3
ROUND_TARGET_S = 0.05 if QUICK else 0.4
MIN_INNER, MAX_INNER = 2, 25


@dataclass
class Comparison:
    product_ms: float  # min over rounds of the per-round median
    ideal_ms: float
    ratio: float  # product_ms / ideal_ms
    rounds: int
    inner: int
    product_round_ms: list[float] = field(default_factory=list)
    ideal_round_ms: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _once(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def plan(t_pair: float, rounds: int = ROUNDS, target: float = ROUND_TARGET_S) -> tuple[int, int]:
    """(rounds, inner) so that one round of A B pairs takes about ``target`` seconds."""
    inner = int(target / max(t_pair, 1e-9))
    return rounds, min(MAX_INNER, max(MIN_INNER, inner))


def interleaved(product: Callable[[], object], ideal: Callable[[], object], rounds: int | None = None,
                inner: int | None = None) -> Comparison:
    """Time ``product`` against ``ideal``, interleaved; both are assumed warm (call each once before)."""
    t_pair = _once(product) + _once(ideal)  # a second warm-up pair, used to size the rounds
    r, i = plan(t_pair)
    rounds = rounds or r
    inner = inner or i
    ta: list[list[float]] = []
    tb: list[list[float]] = []

    def spread(rows: list[list[float]]) -> float:
        med = np.median(np.array(rows), axis=1)
        return float(med.max() / med.min())

    while len(ta) < rounds or (len(ta) < max(rounds, MAX_ROUNDS) and max(spread(ta), spread(tb)) > NOISY):
        gc.collect()
        ra, rb = [], []
        for _ in range(inner):
            ra.append(_once(product))
            rb.append(_once(ideal))
        ta.append(ra)
        tb.append(rb)
    rounds = len(ta)
    med_a = np.median(np.array(ta), axis=1) * 1e3
    med_b = np.median(np.array(tb), axis=1) * 1e3
    return Comparison(
        product_ms=float(med_a.min()),
        ideal_ms=float(med_b.min()),
        ratio=float(med_a.min() / med_b.min()),
        rounds=rounds,
        inner=inner,
        product_round_ms=[float(x) for x in med_a],
        ideal_round_ms=[float(x) for x in med_b],
        round_ratios=[float(x) for x in med_a / med_b],
    )


def pedantic_rounds(t_product_ms: float) -> int:
    """How many rounds ``benchmark.pedantic`` gets: about 0.5 s of product calls, 1 to 10 rounds."""
    budget_ms = 100.0 if QUICK else 500.0
    return int(min(10, max(1, budget_ms // max(t_product_ms, 1e-6))))


@dataclass
class MultiComparison:
    """Several callables timed round-robin in one loop (A B C A B C …); the times of ``interleaved_many``."""

    names: list[str]
    ms: dict[str, float]  # per side: min over rounds of the per-round median
    round_ms: dict[str, list[float]]  # per side: the per-round medians
    rounds: int
    inner: int

    def ratio(self, a: str, b: str) -> float:
        """a / b of the headline times (min over rounds of the per-round medians)."""
        return self.ms[a] / self.ms[b]

    def round_ratios(self, a: str, b: str) -> list[float]:
        """a / b round by round (both measured in the same rounds, so the machine's drift cancels)."""
        return [x / y for x, y in zip(self.round_ms[a], self.round_ms[b], strict=True)]

    def as_dict(self) -> dict:
        return asdict(self)


def interleaved_many(calls: dict[str, Callable[[], object]], rounds: int | None = None,
                     inner: int | None = None) -> MultiComparison:
    """``interleaved`` for more than two sides: each round runs ``inner`` passes of every callable in turn.

    All callables are assumed warm (each called once before). The same rules as ``interleaved``: each
    side's time is the minimum over rounds of its per-round medians; more rounds run (up to
    ``MAX_ROUNDS``) while any side's round medians spread by more than ``NOISY``.
    """
    names = list(calls)
    t_pass = sum(_once(calls[k]) for k in names)  # one more warm pass, used to size the rounds
    r, i = plan(t_pass)
    rounds = rounds or r
    inner = inner or i
    times: dict[str, list[list[float]]] = {k: [] for k in names}

    def spread(rows: list[list[float]]) -> float:
        med = np.median(np.array(rows), axis=1)
        return float(med.max() / med.min())

    def noisy() -> bool:
        return max(spread(times[k]) for k in names) > NOISY

    while len(times[names[0]]) < rounds or (len(times[names[0]]) < max(rounds, MAX_ROUNDS) and noisy()):
        gc.collect()
        rows: dict[str, list[float]] = {k: [] for k in names}
        for _ in range(inner):
            for k in names:
                rows[k].append(_once(calls[k]))
        for k in names:
            times[k].append(rows[k])
    med = {k: np.median(np.array(times[k]), axis=1) * 1e3 for k in names}
    return MultiComparison(
        names=names,
        ms={k: float(med[k].min()) for k in names},
        round_ms={k: [float(x) for x in med[k]] for k in names},
        rounds=len(times[names[0]]),
        inner=inner,
    )
