"""The standard configurations of BENCH.md (S, P, M, W, D) and their exact data rules.

Data rules: weights N(0, 1)/√fan_in and biases 0.1·N(0, 1) (``MLP.init``), inputs N(0, 1), MSE targets
N(0, 1), CE labels uniform over the d classes; every array comes from a fixed seed, in the config's dtype.
S also runs in float64 (id ``S-f64``). ``PYHESSK_BENCH_QUICK=1`` drops W (the 3.1M-parameter net).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

QUICK = os.environ.get("PYHESSK_BENCH_QUICK", "0") not in ("", "0")

#: seeds: θ from MLP.init(seed=THETA_SEED); X, Y and the direction blocks from DATA_SEED.
THETA_SEED = 0
DATA_SEED = 1234


@dataclass(frozen=True)
class Config:
    """One column of the benchmark table."""

    name: str
    sizes: tuple[int, ...]
    activation: str
    loss: str
    n: int
    dtype: str = "float32"
    block_k: int = 16  # k of the block products (HV, GV with V of shape (N, k))

    @property
    def id(self) -> str:
        return self.name if self.dtype == "float32" else f"{self.name}-f64"

    @property
    def d(self) -> int:
        return self.sizes[-1]

    @property
    def num_params(self) -> int:
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def describe(self) -> str:
        return f"{list(self.sizes)} {self.activation} {self.loss} n={self.n} N={self.num_params:,} {self.dtype}"


CONFIGS: tuple[Config, ...] = (
    Config("S", (10, 32, 32, 1), "tanh", "mse", 256),
    Config("S", (10, 32, 32, 1), "tanh", "mse", 256, dtype="float64"),
    Config("P", (2, 50, 50, 50, 1), "tanh", "mse", 4096),
    Config("M", (784, 256, 256, 10), "tanh", "softmax_cross_entropy", 1024),
    # W: a block of 16 vectors costs ~16 HVPs (~3 s per call here); k = 4 keeps the suite within minutes.
    Config("W", (1024, 1024, 1024, 1024, 10), "relu", "softmax_cross_entropy", 512, block_k=4),
    Config("D", (64,) + (64,) * 10 + (10,), "tanh", "softmax_cross_entropy", 512),
)

#: the column order of the table
COLUMN_ORDER: tuple[str, ...] = ("S", "S-f64", "P", "M", "W", "D")


def active_configs() -> tuple[Config, ...]:
    """The configs this run measures: all of them, or all but W under PYHESSK_BENCH_QUICK=1.

    ``PYHESSK_BENCH_CONFIGS=S,M`` (a comma list of ids) restricts the run further.
    """
    chosen = [c for c in CONFIGS if not (QUICK and c.name == "W")]
    only = {s.strip() for s in os.environ.get("PYHESSK_BENCH_CONFIGS", "").split(",") if s.strip()}
    if only:
        chosen = [c for c in chosen if c.id in only]
    return tuple(chosen)


@dataclass
class Problem:
    """A built config: the network, θ, the batch and the direction vectors, all in the config's dtype."""

    cfg: Config
    net: Any
    theta: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    v: np.ndarray  # (N,)
    V: np.ndarray  # (N, k) with k = cfg.block_k


def build(cfg: Config, backend: str = "numpy") -> Problem:
    """The network and data of ``cfg`` by the BENCH.md rules (fixed seeds, so every run sees the same arrays)."""
    import pyhessk as hk

    net = hk.MLP(list(cfg.sizes), activation=cfg.activation, loss=cfg.loss, backend=backend)
    theta = net.init(seed=THETA_SEED, dtype=cfg.dtype)
    rng = np.random.default_rng(DATA_SEED)
    dt = np.dtype(cfg.dtype)
    X = rng.standard_normal((cfg.n, cfg.sizes[0])).astype(dt)
    # MSE targets N(0, 1); CE labels uniform over the d classes
    Y = rng.standard_normal((cfg.n, cfg.d)).astype(dt) if cfg.loss == "mse" else rng.integers(0, cfg.d, size=cfg.n)
    N = net.num_params
    v = rng.standard_normal(N).astype(dt)
    V = rng.standard_normal((N, cfg.block_k)).astype(dt)
    return Problem(cfg, net, theta, X, Y, v, V)
