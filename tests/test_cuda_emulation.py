"""The GPU engine's code on the CPU: ``CudaEngine`` over the host emulation of its kernels
(pyhessk/backends/cuda/_emulation.py) against the NumPy reference engine.

The emulation runs the same kernel step functions (csrc/cuda/kernels) in plain loops and the same pass
orchestration as on a GPU, so these tests check the index arithmetic of every kernel, the GEMM shapes and
leading dimensions, the buffer ping-pong and the workspace handling; what they cannot check is the device
itself (launch configuration limits, memory visibility, cuBLAS), which tests/test_cuda_engine.py covers on a GPU.
For the whole oracle suite on the emulation: ``PYHESSK_TEST_CUDA_EMULATION=1 pytest -k cuda``.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import pyhessk as hk
from cases import CASE_IDS, CASES, Case, curvature_reads, sampled_estimates
from oracles import rel_err
from pyhessk import _spec
from pyhessk.backends.cuda import _kernels, _source


def _emulation_source_present() -> bool:
    try:
        return (_source.source_root() / "cuda" / "emulation" / "host_kernels.cpp").is_file()
    except FileNotFoundError:
        return False


if shutil.which("g++") is None and shutil.which("c++") is None:
    pytest.skip("no host C++ compiler to build the kernel emulation", allow_module_level=True)
if not _emulation_source_present():
    pytest.skip("the kernel emulation's source (csrc/cuda/emulation) is not here (installed package run)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def engine():
    from pyhessk.backends.cuda._emulation import emulated_engine

    return emulated_engine()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_emulated_engine_matches_numpy(case, engine):
    th, X, Y = case.data("float64")
    rng = np.random.default_rng(3)
    V = rng.standard_normal((th.size, 3))
    U = rng.standard_normal((case.n, case.sizes[-1], 2))
    ref = curvature_reads(case.net("numpy").linearize(th, X, Y), V, U)
    got = curvature_reads(case.net(engine).linearize(th, X, Y), V, U)
    for key in ref:
        assert rel_err(got[key], ref[key]) < 1e-12, key
        assert type(got[key]) is np.ndarray and got[key].dtype == np.float64, key
    f = case.net(engine).forward(th, X)
    assert rel_err(f, case.net("numpy").forward(th, X)) < 1e-13

    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    args32 = [cast(a) for a in (th, X, Y)]
    ref32 = curvature_reads(case.net("numpy").linearize(*args32), cast(V), cast(U))
    got32 = curvature_reads(case.net(engine).linearize(*args32), cast(V), cast(U))
    for key in ref:
        assert key == "loss" or got32[key].dtype == np.float32, key
        assert rel_err(got32[key], ref[key]) <= 2 * rel_err(ref32[key], ref[key]) + 1e-6, key


@pytest.mark.parametrize("act", [a.name for a in _spec.ACTIVATIONS])
@pytest.mark.parametrize("loss", [spec.name for spec in _spec.LOSSES])
def test_every_activation_and_loss_instantiation(act, loss, engine):
    case = Case((3, 4, 3), act, loss, n=6, seed=5)
    th, X, Y = case.data("float64")
    V = np.random.default_rng(1).standard_normal((th.size, 2))
    ref, got = case.net("numpy").linearize(th, X, Y), case.net(engine).linearize(th, X, Y)
    assert rel_err(got.grad, ref.grad) < 1e-12
    assert rel_err(got.hvp(V), ref.hvp(V)) < 1e-12
    assert rel_err(got.gnh_entries().diagonal(), ref.gnh_entries().diagonal()) < 1e-12


@pytest.mark.parametrize("case", [CASES[0], CASES[2], Case((3, 5, 4, 4, 3), ("relu", "gelu", "silu"),
                                                             "softmax_cross_entropy", l2=0.05, n=9, seed=2),
                                  Case((4, 6, 2), "tanh", "sigmoid_cross_entropy", reduction="sum", bias=False,
                                       n=7, seed=8)], ids=lambda c: str(c.sizes))
def test_dense_assembly_matches_block_products(case, engine):
    """The assembly on the device path (the linearization's flat caches reshaped, s·H_out from the loss
    head's kernel) against the NumPy engine's block products H·I and G·I, in float64 and float32."""
    th, X, Y = case.data("float64")
    ref = case.net("numpy").linearize(th, X, Y)
    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        args = (th, X, Y) if dt is np.float64 else tuple(cast(a) for a in (th, X, Y))
        c = case.net(engine).linearize(*args)
        for kind in ("hessian", "gnh"):
            got = getattr(c, kind)(method="assemble")
            assert type(got) is np.ndarray and got.dtype == dt, kind
            assert rel_err(got, getattr(ref, kind)(method="products")) < tol, kind


# batch sizes around the levels of the C++ engine's search tree over the running sums (fanout 16)
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 255, 256, 257, 400, 4097])
def test_sampler_draws_the_cpp_engines_stream(engine, n):
    """The GPU sampler computes draw r of entry t from splitmix64's (r + 1)-th state and locates it by a
    binary search, so it reproduces the C++ engine's sequential stream, located through its search tree,
    exactly (the same seed gives the same estimate)."""
    if "cpp" not in hk.available_backends():
        pytest.skip("the C++ engine is not built")
    assert rel_err(sampled_estimates(engine, n), sampled_estimates("cpp", n)) < 1e-12


def test_sampler_is_unbiased_and_seeded(engine):
    case = Case((3, 5, 4), "tanh", "softmax_cross_entropy", n=500, seed=4)
    th, X, Y = case.data("float64")
    e = case.net(engine).linearize(th, X, Y).gnh_entries()
    rows, cols = np.arange(0, 20), np.arange(5, 25)
    exact = e.entries(rows, cols)
    est = np.mean([e.estimate(rows, cols, eps=0.3, delta=0.2, seed=s, allow_exact=False) for s in range(40)], axis=0)
    bound = np.sqrt(e.diagonal()[rows] * e.diagonal()[cols])
    assert np.all(np.abs(est - exact) <= 0.3 * bound)
    assert np.array_equal(e.estimate(rows, cols, eps=0.3, delta=0.2, seed=7, allow_exact=False),
                          e.estimate(rows, cols, eps=0.3, delta=0.2, seed=7, allow_exact=False))


def test_inputs_are_not_modified_and_snapshots_hold(engine):
    case = Case((3, 4, 4, 2), "gelu", "sigmoid_cross_entropy", l2=0.1, n=5, seed=6)
    th, X, Y = case.data("float64")
    V = np.random.default_rng(2).standard_normal((th.size, 2))
    copies = [a.copy() for a in (th, X, Y, V)]
    c = case.net(engine).linearize(th, X, Y)
    before = c.hvp(V)
    for a in (th, X, Y):
        a += 1.0  # the snapshot owns its θ, X, Y
    assert np.array_equal(c.hvp(V), before)
    assert np.array_equal(V, copies[3])


def test_workspace_is_allocated_once_per_block_width(engine):
    case = Case((3, 6, 5, 2), "tanh", "mse", n=7, seed=3)
    th, X, Y = case.data("float64")
    c = case.net(engine).linearize(th, X, Y)
    lin = c._lin
    V = np.ones((th.size, 3))
    c.hvp(V)
    ws = lin.ws
    c.gnvp(V), c.jvp(V), c.hvp(V[:, :2])
    assert lin.ws is ws and lin.ws_k == 3  # reused for every k ≤ 3
    c.hvp(np.ones((th.size, 5)))
    assert lin.ws_k == 5


def test_launches_cover_their_elements(engine):
    provider = engine.provider
    provider.launches.clear()
    case = Case((3, 5, 4, 3), "silu", "softmax_cross_entropy", n=9, seed=1)
    c = case.net(engine).linearize(*case.data("float64"))
    c.hvp(np.ones((c.num_params, 2)))
    c.gnh_entries().entries([0, 1], [2, 3])
    assert provider.launches
    for name, total, blocks, threads in provider.launches:
        if _kernels.KERNELS[name].per_item:
            assert (blocks, threads) == (total, _kernels.REDUCE_THREADS)
        else:
            assert blocks * threads >= total or blocks == _kernels.MAX_BLOCKS
            assert threads == _kernels.THREADS


def test_a_wrong_internal_launch_is_a_python_error(engine):
    with pytest.raises(TypeError, match="hadamard_kernel: argument 2 must be a contiguous float64"):
        engine.provider.launch("hadamard_kernel", np.dtype(np.float64), None, 3, np.zeros(3), np.zeros(3),
                               np.zeros(3, np.float32))


def test_emulated_batched_gemm_matches_einsum(engine):
    """The host emulation's strided batched GEMM (the factored product's contractions) on interleaved
    operands: row-major S (m, n, d) read per sample s as an (m × d) matrix of leading dimension n·d."""
    gemm = engine.provider.gemm
    rng = np.random.default_rng(0)
    m, n, d, k = 5, 7, 3, 2
    S, P = rng.standard_normal((m, n, d)), rng.standard_normal((n, k, m))
    u = np.full((n, k, d), np.nan)
    gemm(False, False, k, d, m, 0.5, P.ravel(), m, S.ravel(), n * d, 0.0, u.ravel(), d, batch=n, strides=(k * m, d, k * d))
    np.testing.assert_allclose(u, 0.5 * np.einsum("isc,ski->skc", S, P), rtol=1e-13)
    Q = np.ones((n, k, m))
    gemm(False, True, k, m, d, 1.0, u.ravel(), d, S.ravel(), n * d, 2.0, Q.ravel(), m, batch=n, strides=(k * d, d, k * m))
    np.testing.assert_allclose(Q, 2.0 + np.einsum("isc,skc->ski", S, u), rtol=1e-13)
