"""The cuda engine on a GPU, both paths (``core`` = pyhessk._core_cuda, ``nvrtc`` = CuPy/NVRTC) and both dtypes,
against the NumPy reference engine; CuPy, PyTorch and JAX arrays in, CuPy out. Skips with the reason where no
GPU is visible, so a GPU session runs this file unchanged (docs/cuda.md lists the commands).
"""

from __future__ import annotations

import numpy as np
import pytest

import pyhessk as hk
from cases import CASE_IDS, CASES, Case, curvature_reads, sampled_estimates
from oracles import rel_err

pytestmark = pytest.mark.cuda

cupy = pytest.importorskip("cupy", reason="cupy not installed: the cuda engine needs it (pip install cupy-cuda13x)")

from pyhessk.backends import cuda as cuda_pkg  # noqa: E402

_OK, _WHY = cuda_pkg.gpu_status(cupy)
if not _OK:
    pytest.skip(f"the cuda engine needs a GPU: {_WHY}", allow_module_level=True)


def _engines() -> list:
    params = []
    for path in cuda_pkg.PATHS:
        try:
            params.append(pytest.param(cuda_pkg.make_engine(path), id=path))
        except RuntimeError as exc:
            params.append(pytest.param(None, id=path, marks=pytest.mark.skip(reason=f"path {path}: {exc}")))
    return params


ENGINES = _engines()


def gpu_reads(c, V, U):
    return curvature_reads(c, V, U, dense=False)  # the dense matrices: test_dense_assembly_on_the_device


def _host(x):
    return cupy.asnumpy(x) if isinstance(x, cupy.ndarray) else np.asarray(x)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gpu_engine_matches_numpy(case, engine):
    """float64 to 1e-12 relative; float32 at most twice the NumPy engine's own float32 error."""
    th, X, Y = case.data("float64")
    rng = np.random.default_rng(3)
    V = rng.standard_normal((th.size, 3))
    U = rng.standard_normal((case.n, case.sizes[-1], 2))
    ref = gpu_reads(case.net("numpy").linearize(th, X, Y), V, U)
    dev = [cupy.asarray(a) for a in (th, X)]
    Yd = cupy.asarray(Y)
    got = gpu_reads(case.net(engine).linearize(*dev, Yd), cupy.asarray(V), cupy.asarray(U))
    for key in ref:
        assert rel_err(_host(got[key]), ref[key]) < 1e-12, key
    assert isinstance(got["hvp"], cupy.ndarray) and isinstance(got["grad"], cupy.ndarray)
    assert rel_err(_host(case.net(engine).forward(*dev)), case.net("numpy").forward(th, X)) < 1e-12

    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    ref32 = gpu_reads(case.net("numpy").linearize(*[cast(a) for a in (th, X, Y)]), cast(V), cast(U))
    got32 = gpu_reads(case.net(engine).linearize(*[cupy.asarray(cast(a)) for a in (th, X, Y)]),
                 cupy.asarray(cast(V)), cupy.asarray(cast(U)))
    for key in ref:
        assert key == "loss" or got32[key].dtype == np.float32, key
        assert rel_err(_host(got32[key]), ref[key]) <= 2 * rel_err(ref32[key], ref[key]) + 1e-6, key


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_dense_assembly_on_the_device(case, engine):
    """c.hessian() and c.gnh() on the GPU, assembled and from block products (CuPy in, CuPy out; NumPy in,
    NumPy out), against the NumPy engine's block products H·I and G·I."""
    th, X, Y = case.data("float64")
    ref = case.net("numpy").linearize(th, X, Y)
    on_device = case.net(engine).linearize(*(cupy.asarray(a) for a in (th, X, Y)))
    on_host = case.net(engine).linearize(th, X, Y)
    for kind in ("hessian", "gnh"):
        want = getattr(ref, kind)(method="products")
        got = getattr(on_device, kind)()
        assert isinstance(got, cupy.ndarray) and got.dtype == np.float64, kind
        assert rel_err(_host(got), want) < 1e-12, kind
        got = getattr(on_host, kind)(method="assemble")
        assert type(got) is np.ndarray and rel_err(got, want) < 1e-12, kind
        got = getattr(on_device, kind)(method="products", chunk_size=5)  # columns of block products, on the device
        assert isinstance(got, cupy.ndarray) and rel_err(_host(got), want) < 1e-12, kind


@pytest.mark.parametrize("engine", ENGINES)
def test_sampler_matches_the_cpp_stream(engine):
    if "cpp" not in hk.available_backends():
        pytest.skip("the C++ engine is not built")
    assert rel_err(sampled_estimates(engine), sampled_estimates("cpp")) < 1e-10


def test_auto_picks_cuda_for_gpu_arrays():
    case = Case((3, 4, 2), "tanh", "mse", n=5)
    th, X, Y = case.data("float64")
    net = case.net("auto")
    c = net.linearize(cupy.asarray(th), cupy.asarray(X), cupy.asarray(Y))
    assert c._engine.name == "cuda"
    assert isinstance(c.hvp(cupy.asarray(np.ones(th.size))), cupy.ndarray)
    assert net.linearize(th, X, Y)._engine.name != "cuda"  # NumPy arrays stay on the CPU engines
    assert "picks 'cuda' for GPU arrays" in hk.show_config()


@pytest.mark.parametrize("backend", ["cuda", "auto"])
def test_functional_api_and_flatten_take_gpu_weights(backend):
    from pyhessk import functional as F

    case = Case((3, 4, 2), "tanh", "mse", n=5)
    th, X, Y = case.data("float64")
    net = case.net("numpy")
    Ws, bs = net.unflatten(th)
    dWs, dbs = [cupy.asarray(w) for w in Ws], [cupy.asarray(b) for b in bs]
    gpu_net = case.net(backend)
    theta = gpu_net.flatten(dWs, dbs)
    assert isinstance(theta, cupy.ndarray) and np.array_equal(_host(theta), th)
    views = gpu_net.unflatten(theta)[0][1]
    assert isinstance(views, cupy.ndarray) and views.data.ptr == theta.data.ptr + 4 * 3 * 8 + 4 * 8
    flat = F.from_layers(dWs, [bs[0], dbs[1]])  # a host array among GPU ones is uploaded
    assert isinstance(flat, cupy.ndarray) and np.array_equal(_host(flat), th)
    V = np.random.default_rng(1).standard_normal(th.size)
    VWs, Vbs = F.to_layers(cupy.asarray(V), dWs, dbs)
    assert isinstance(VWs[0], cupy.ndarray)
    got = F.hvp(dWs, dbs, cupy.asarray(X), cupy.asarray(Y), (VWs, Vbs), backend=backend)
    ref = F.hvp(Ws, bs, X, Y, F.to_layers(V, Ws, bs), backend="numpy")
    for g, r in zip(got[0] + got[1], ref[0] + ref[1]):
        assert isinstance(g, cupy.ndarray) and rel_err(_host(g), r) < 1e-12
    loss, g = F.loss_and_grad(dWs, dbs, X, Y, backend=backend)
    assert rel_err(_host(g), net.grad(th, X, Y)) < 1e-12


def test_torch_cuda_tensors_are_read_without_copies():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    case = Case((3, 4, 2), "tanh", "mse", n=5)
    th, X, Y = case.data("float64")
    t = torch.as_tensor(th, device="cuda")
    from pyhessk._arrays import to_cupy

    assert to_cupy(t, "theta").data.ptr == t.data_ptr()
    c = case.net("cuda").linearize(t, torch.as_tensor(X, device="cuda"), torch.as_tensor(Y, device="cuda"))
    ref = case.net("numpy").linearize(th, X, Y)
    assert rel_err(_host(c.grad), ref.grad) < 1e-12


@pytest.mark.parametrize("engine", ENGINES)
def test_products_follow_the_current_stream(engine):
    case = Case((5, 8, 8, 3), "gelu", "softmax_cross_entropy", n=16, seed=3)
    th, X, Y = (cupy.asarray(a) if a.dtype.kind == "f" else a for a in case.data("float64"))
    c = case.net(engine).linearize(th, X, Y)
    V = cupy.asarray(np.random.default_rng(0).standard_normal((c.num_params, 4)))
    expected = c.hvp(V)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        got = c.hvp(V)
    stream.synchronize()
    assert rel_err(_host(got), _host(expected)) == 0


def test_tf32_is_opt_in():
    engine = cuda_pkg.make_engine(allow_tf32=True)
    assert engine.provider.allow_tf32 and not cuda_pkg.make_engine().provider.allow_tf32
    case = Case((64, 128, 10), "tanh", "softmax_cross_entropy", n=256, seed=1)
    th, X, Y = case.data("float32")
    ref = case.net("numpy").linearize(th.astype(np.float64), X.astype(np.float64), Y)
    c = case.net(engine).linearize(cupy.asarray(th), cupy.asarray(X), Y)
    assert rel_err(_host(c.grad), ref.grad) < 1e-2  # TF32 keeps 10 mantissa bits


def test_gpu_inputs_are_checked_on_the_device():
    case = Case((3, 4, 2), "tanh", "mse", n=5)
    th, X, Y = case.data("float64")
    net = case.net("cuda")
    bad = cupy.asarray(X)
    bad[0, 0] = cupy.nan
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        net.linearize(cupy.asarray(th), bad, Y)
    with pytest.raises(TypeError, match="mixed float32/float64"):
        net.linearize(cupy.asarray(th), cupy.asarray(X, dtype=cupy.float32), Y)


@pytest.mark.parametrize("engine", ENGINES)
def test_device_answers_stay_on_the_device(engine):
    """A linearization of GPU arrays answers in CuPy: empty blocks, index-driven GNH reads and the damped solve
    too (which factorises on the host and hands the result back to the device)."""
    case = Case((3, 4, 3), "tanh", "softmax_cross_entropy", n=6, seed=1)
    th, X, Y = case.data("float64")
    c = case.net(engine).linearize(cupy.asarray(th), cupy.asarray(X), cupy.asarray(Y))
    N, n, d = c.num_params, case.n, case.sizes[-1]
    e = c.gnh_entries()
    none = cupy.zeros((N, 0))
    empties = {
        "hvp": (c.hvp(none), (N, 0)), "gnvp": (c.gnvp(none), (N, 0)), "factored": (e.gnvp(none), (N, 0)),
        "jvp": (c.jvp(none), (n, d, 0)), "vjp": (c.vjp(cupy.zeros((n, d, 0))), (N, 0)),
        "entries": (e.entries([], []), (0,)), "block": (e.block([], [1]), (0, 1)), "column": (e.column([]), (N, 0)),
        "estimate": (e.estimate([], []), (0,)), "solve": (c.gnh_solve(none, 0.1), (N, 0)),
    }
    for key, (got, shape) in empties.items():
        assert isinstance(got, cupy.ndarray) and got.shape == shape, key

    rng = np.random.default_rng(5)
    B = rng.standard_normal((N, 3))
    G = case.net("numpy").linearize(th, X, Y).gnh()
    want = np.linalg.solve(G + 0.1 * np.eye(N), B)
    got = c.gnh_solve(cupy.asarray(B), 0.1)
    assert isinstance(got, cupy.ndarray) and rel_err(_host(got), want) < 1e-10
    got1 = c.gnh_solve(cupy.asarray(B[:, 1]), 0.1)
    assert isinstance(got1, cupy.ndarray) and got1.shape == (N,) and rel_err(_host(got1), want[:, 1]) < 1e-10
    assert type(c.gnh_solve(B, 0.1)) is np.ndarray  # NumPy in, NumPy out


@pytest.mark.parametrize("engine", ENGINES)
def test_median_of_means_on_the_device(engine):
    """The median-of-means estimator on a GPU snapshot: CuPy out, within its (ε, δ) bound of the exact entries."""
    case = Case((4, 6, 5), "tanh", "softmax_cross_entropy", n=400, seed=2)
    th, X, Y = case.data("float64")
    e = case.net(engine).linearize(*(cupy.asarray(a) for a in (th, X, Y))).gnh_entries()
    rows, cols = np.array([0, 3, 7, 30, 40, 55]), np.array([1, 3, 9, 20, 41, 60])
    est = e.estimate(rows, cols, eps=0.5, delta=1e-3, seed=7, method="median_of_means", allow_exact=False)
    assert isinstance(est, cupy.ndarray) and est.shape == rows.shape
    ref = case.net("numpy").linearize(th, X, Y).gnh_entries()
    diag = ref.diagonal()
    bound = 0.5 * np.sqrt(diag[rows] * diag[cols])
    assert np.all(np.abs(_host(est) - ref.entries(rows, cols)) <= bound)


@pytest.mark.parametrize("engine", ENGINES)
def test_host_toolkit_on_a_device_snapshot(engine):
    """The host-side tools (diagonal, trace, eigsh, HODLR) accept a snapshot of GPU arrays and answer in NumPy."""
    case = Case((3, 5, 3), "tanh", "softmax_cross_entropy", n=8, seed=4)
    th, X, Y = case.data("float64")
    c = case.net(engine).linearize(*(cupy.asarray(a) for a in (th, X, Y)))
    ref = case.net("numpy").linearize(th, X, Y)
    for kind in ("gnh", "hessian"):
        got = hk.diagonal(c, kind)
        assert type(got) is np.ndarray and rel_err(got, hk.diagonal(ref, kind)) < 1e-12, kind
    assert abs(hk.trace(c, "gnh", method="exact") - hk.trace(ref, "gnh", method="exact")) < 1e-10
    vals, _ = hk.eigsh(c, k=2, kind="gnh")
    assert rel_err(vals, np.linalg.eigvalsh(ref.gnh())[::-1][:2]) < 1e-8  # descending for "LA"
    h = hk.gnh_hodlr(c, damping=0.1, tol=0.0, leaf_size=8)
    b = np.random.default_rng(1).standard_normal(c.num_params)
    assert rel_err(h.solve(b), np.linalg.solve(ref.gnh() + 0.1 * np.eye(c.num_params), b)) < 1e-8
    assert h.report(dense=True).solve_rel_error < 1e-8  # the dense K from the device, on the host
