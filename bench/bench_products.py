"""Forward, gradient, Hessian and Gauss–Newton products on the BENCH.md configs, each against its GEMM ideal.

"cached" products reuse one ``net.linearize`` made outside the timed call; "fresh" ones
(``hk.hvp``, ``hk.gnvp``) recompute the forward (and for the HVP the backward) pass every call.
Block products use V of shape (N, k), k = ``cfg.block_k`` (16; 4 on W).
"""

from __future__ import annotations

import pytest

import pyhessk as hk

from pyhessk._bench import ideal
from .harness import measure

PRODUCTS = (
    "forward",
    "gradient",
    "hvp_cached",
    "hvp_fresh",
    "ggn_cached",
    "ggn_fresh",
    "hvp_block",
    "ggn_block",
    "hessian_dense",
)


@pytest.mark.parametrize("product", PRODUCTS)
def test_product(benchmark, problem, curv, product):  # noqa: ANN001
    p, c, cfg = problem, curv, problem.cfg
    net, theta, X, Y = p.net, p.theta, p.X, p.Y
    k = 1
    if product == "forward":
        call = lambda: net.forward(theta, X)  # noqa: E731
    elif product == "gradient":
        call = lambda: net.linearize(theta, X, Y)  # noqa: E731  (fused forward + backward: the gradient's cost)
    elif product == "hvp_cached":
        call = lambda: c.hvp(p.v)  # noqa: E731
    elif product == "hvp_fresh":
        call = lambda: hk.hvp(net, theta, X, Y, p.v)  # noqa: E731
    elif product == "ggn_cached":
        call = lambda: c.gnvp(p.v)  # noqa: E731
    elif product == "ggn_fresh":
        call = lambda: hk.gnvp(net, theta, X, Y, p.v)  # noqa: E731
    elif product == "hvp_block":
        k = cfg.block_k
        call = lambda: c.hvp(p.V)  # noqa: E731
    elif product == "ggn_block":
        k = cfg.block_k
        call = lambda: c.gnvp(p.V)  # noqa: E731
    elif product == "hessian_dense":
        if cfg.name != "S":
            pytest.skip("the dense Hessian is measured on S only (N = 1,441)")
        k = cfg.num_params
        call = c.hessian
    else:  # pragma: no cover
        raise AssertionError(product)
    kernels = ideal.kernels_for(product, cfg.sizes, cfg.n, k=k)
    extra = {"k": k}
    if product == "hessian_dense":
        extra["note"] = "assembled from per-sample terms where the engine can (numpy, cpp), else block products"
    if product in ("hvp_block", "ggn_block"):
        extra["note"] = f"one block product with k={k} vectors"
    comp = measure(benchmark, p, product, call, kernels, **extra)
    if product in ("hvp_block", "ggn_block"):
        benchmark.extra_info["per_vector_ms"] = comp.product_ms / k
