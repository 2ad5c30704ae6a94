"""The C++ engine's binding contract: ids equal the registry, typed buffers, clear errors, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import pyhessk as hk
from cases import Case
from oracles import rel_err
from pyhessk import _spec

from pyhessk import _dispatch  # noqa: E402

_engine, _why = _dispatch.probe("cpp")
if _engine is None:
    pytest.skip(f"the C++ engine cannot run: {_why}", allow_module_level=True)
core = pytest.importorskip("pyhessk._core_cpu", reason="the C++ engine is not built")


def test_enum_ids_equal_the_registry():
    assert core.activation_ids() == {a.name: a.id for a in _spec.ACTIVATIONS}
    assert core.loss_ids() == {l.name: l.id for l in _spec.LOSSES}


def test_build_info():
    info = core.build_info()
    assert info["version"] == hk.__version__
    assert "openmp" in info


def raw(dtype=np.float64):
    case = Case((3, 4, 2), "tanh", "mse", n=5)
    th, X, Y = case.data(str(np.dtype(dtype)))
    cls = core.LinearizationF64 if dtype == np.float64 else core.LinearizationF32
    return cls, th, X, Y


def test_wrong_dtype_is_a_type_error_not_a_cast():
    cls, th, X, Y = raw()
    with pytest.raises(TypeError):
        cls([3, 4, 2], [1], 0, 0.0, True, True, th.astype(np.float32), X, Y, True)


def test_shapes_are_rechecked_in_cpp():
    cls, th, X, Y = raw()
    with pytest.raises(ValueError, match="theta must have shape"):
        cls([3, 4, 2], [1], 0, 0.0, True, True, th[:-1], X, Y, True)
    with pytest.raises(ValueError, match="X must have shape"):
        cls([3, 4, 2], [1], 0, 0.0, True, True, th, X[:, :2].copy(), Y, True)
    with pytest.raises(ValueError, match="activation"):
        cls([3, 4, 2], [42], 0, 0.0, True, True, th, X, Y, True)
    lin = cls([3, 4, 2], [1], 0, 0.0, True, True, th, X, Y, True)
    V = np.zeros((th.size, 2))
    with pytest.raises(ValueError, match="out must have shape"):
        lin.hvp(V, np.zeros((th.size, 3)))
    with pytest.raises(IndexError):
        lin.act(7)


def test_cache_views_keep_their_owner_alive():
    cls, th, X, Y = raw()
    lin = cls([3, 4, 2], [1], 0, 0.0, True, True, th, X, Y, True)
    A0 = lin.act(0)
    del lin
    np.testing.assert_array_equal(A0, X)


def test_two_threads_on_two_snapshots_get_correct_answers():
    cases = [Case((20, 64, 64, 5), "tanh", "softmax_cross_entropy", n=300, seed=s) for s in (40, 41)]
    snaps = [c.net("cpp").linearize(*c.data()) for c in cases]
    refs = [c.net("numpy").linearize(*c.data()) for c in cases]
    V = np.random.default_rng(0).standard_normal((snaps[0].num_params, 8))
    want = [r.hvp(V) for r in refs]
    got: list = [None, None]

    def work(i):
        for _ in range(20):
            got[i] = snaps[i].hvp(V)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_one_snapshot_shared_by_threads_stays_correct():
    case = Case((10, 32, 32, 3), "gelu", "softmax_cross_entropy", n=200, seed=42)
    c = case.net("cpp").linearize(*case.data())
    ref = case.net("numpy").linearize(*case.data())
    rng = np.random.default_rng(1)
    Vs = [rng.standard_normal((c.num_params, k)) for k in (1, 3, 5, 2)]
    out: dict = {}

    def work(i):
        out[i] = [c.gnvp(Vs[i]) for _ in range(10)][-1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(Vs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, V in enumerate(Vs):
        np.testing.assert_allclose(out[i], ref.gnvp(V), rtol=1e-12, atol=1e-14)


_SHARED_CALLS = """
import os
import signal
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from cases import Case
from pyhessk import _core_cpu
case = Case((6, 16, 10), "tanh", "softmax_cross_entropy", n=2048, seed=7)
c = case.net("cpp").linearize(*case.data())
e = c.gnh_entries()
rng = np.random.default_rng(3)
rows, cols = rng.integers(0, c.num_params, 1500), rng.integers(0, c.num_params, 1500)
calls = lambda: np.stack([e.entries(rows, cols), e.estimate(rows, cols, eps=0.25, delta=0.1, seed=5,
                                                            allow_exact=False)])
first = calls()
for _ in range(200):  # until helper threads have run some entries (they join only when they get a core)
    if _core_cpu.entry_helpers()["helped"] > 0:
        break
    assert np.array_equal(calls(), first)
assert np.array_equal(calls(), first)
pid = os.fork()  # a child forked after the helpers started has none, and must neither hang nor differ
if pid == 0:
    signal.alarm(120)
    os._exit(0 if np.array_equal(calls(), first) else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
np.save(sys.argv[1], first)
print(_core_cpu.entry_helpers()["threads"], _core_cpu.entry_helpers()["helped"])
from pyhessk.backends.cpp import DESCRIPTION
print(DESCRIPTION, file=sys.stderr)
"""


def test_entry_loops_agree_on_one_thread_and_with_helpers(tmp_path):
    """The exact and sampled entry loops share their entries with helper threads (csrc/cpu/helpers.h): the
    same calls with OMP_NUM_THREADS=1 and with the default thread count give equal numbers, also when the
    helpers ran some of the entries, and in a child forked after the helpers started."""
    import os
    import subprocess
    import sys

    tests = os.path.dirname(os.path.abspath(__file__))
    out, report = {}, {}
    for label, threads in (("one", "1"), ("shared", None)):
        env = dict(os.environ)
        env.pop("OMP_NUM_THREADS", None)
        if threads:
            env["OMP_NUM_THREADS"] = threads
        path = tmp_path / f"{label}.npy"
        # (run outside the source tree: the pyhessk under test is the installed one, as in this process)
        proc = subprocess.run([sys.executable, "-c", _SHARED_CALLS, str(path), tests], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        out[label] = np.load(path)
        report[label] = [int(x) for x in proc.stdout.split()] + [proc.stderr.strip().splitlines()[-1]]
    assert report["one"] == [1, 0, "GNH entry loops on one thread (OpenMP's thread count is 1)"]  # no helpers
    threads, helped, described = report["shared"]
    if threads > 1:
        assert helped > 0, "no helper thread ever joined"
        assert described.startswith(f"GNH entry loops on up to {threads} threads")  # what show_config prints
    assert np.all(np.isfinite(out["one"])) and np.any(out["one"][1] != out["one"][0])  # (it sampled)
    np.testing.assert_array_equal(out["shared"], out["one"])


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu", "softplus", "sin"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activations_match_libm_to_a_few_ulp(name, dtype):
    """A [1, 1, 1] net with unit weights outputs φ(x) itself, so the compiled φ is compared directly."""
    net = hk.MLP([1, 1, 1], activation=name, loss="mse", backend="cpp")
    theta = np.array([1, 0, 1, 0], dtype=dtype)
    x = np.concatenate([np.linspace(-40, 40, 20001), np.geomspace(1e-30, 1, 300), -np.geomspace(1e-30, 1, 300)])
    got = net.forward(theta, x.astype(dtype)[:, None])[:, 0]
    xs = x.astype(dtype).astype(np.float64)
    ref = {"tanh": np.tanh(xs), "sigmoid": 1 / (1 + np.exp(-xs)), "silu": xs / (1 + np.exp(-xs)),
           "softplus": np.logaddexp(0, xs), "sin": np.sin(xs)}[name]
    eps = np.finfo(dtype).eps
    tol = 8 * eps * np.maximum(np.abs(ref), np.finfo(dtype).tiny)
    assert np.all(np.abs(got - ref) <= tol), float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)))


def test_the_engine_reports_its_blas_and_both_choices_agree(tmp_path):
    """NumPy's BLAS is preferred (one thread pool in the process); SciPy's is the fallback. Same results."""
    import json
    import os
    import pathlib
    import subprocess
    import sys

    assert "BLAS" in _dispatch.get("cpp").blas
    tests_dir = str(pathlib.Path(__file__).resolve().parent)
    code = (
        f"import json, sys, numpy as np; sys.path.insert(0, {tests_dir!r}); from cases import Case; "
        "from pyhessk import _dispatch; c = Case((4, 6, 3), 'tanh', 'softmax_cross_entropy', n=9); "
        "lin = c.net('cpp').linearize(*c.data()); V = np.random.default_rng(0).standard_normal((lin.num_params, 3)); "
        "print(json.dumps({'blas': _dispatch.get('cpp').blas, 'hvp': lin.hvp(V).tolist()}))"
    )
    runs = {}
    for choice in ("numpy", "scipy"):
        env = {**os.environ, "PYHESSK_CPP_BLAS": choice}
        # run outside the checkout, so that the installed package (with its built extension) is imported
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=120, check=True)
        runs[choice] = json.loads(out.stdout.strip().splitlines()[-1])
    assert "SciPy" in runs["scipy"]["blas"]
    np.testing.assert_allclose(runs["numpy"]["hvp"], runs["scipy"]["hvp"], rtol=1e-12, atol=1e-14)


CHUNK_CASES = [  # batches large enough that blocks run in chunks of samples (linearization_cpu: kChunkBudget)
    Case((6, 40, 30, 3), "tanh", "softmax_cross_entropy", n=1500, seed=60, l2=0.1),
    Case((5, 24, 24, 2), ("gelu", "relu"), "mse", n=1700, seed=61, bias=False),
    Case((4, 30, 3), "softplus", "sigmoid_cross_entropy", n=2100, seed=62, reduction="sum"),
]


@pytest.mark.parametrize("case", CHUNK_CASES, ids=[c.id for c in CHUNK_CASES])
@pytest.mark.parametrize("k", [1, 3, 9])
def test_products_processed_in_sample_chunks_match_numpy(case, k):
    """Blocks whose R-quantities exceed the cache budget run chunk by chunk (uneven last chunk included);
    every product equals the NumPy engine's, which never chunks."""
    th, X, Y = case.data()
    c, ref = case.net("cpp").linearize(th, X, Y), case.net("numpy").linearize(th, X, Y)
    rng = np.random.default_rng(k)
    V = rng.standard_normal((th.size, k))
    U = rng.standard_normal((case.n, case.sizes[-1], k))
    c.hvp(V[:, :1])  # a k = 1 product first: the workspace then grows to the block
    assert rel_err(c.hvp(V), ref.hvp(V)) < 1e-12
    assert rel_err(c.gnvp(V), ref.gnvp(V)) < 1e-12
    assert rel_err(c.jvp(V), ref.jvp(V)) < 1e-12
    assert rel_err(c.vjp(U), ref.vjp(U)) < 1e-12
    assert rel_err(c.hvp(V[:, 0]), ref.hvp(V[:, 0])) < 1e-12  # and back to k = 1 on the same workspace
