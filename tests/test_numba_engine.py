"""What the shared suite does not cover for the Numba engine: its place in ``backend="auto"``, its tables,
lazy compilation, and concurrent use from several threads. (Every engine test of the suite also runs on it.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pyhessk as hk
from pyhessk import _dispatch, _spec

pytest.importorskip("numba")
if _dispatch.probe("numba")[0] is None:
    pytest.skip(f"engine 'numba': {_dispatch.probe('numba')[1]}", allow_module_level=True)

from cases import CASES, Case  # noqa: E402
from oracles import rel_err  # noqa: E402

from pyhessk.backends.numba import activations, losses  # noqa: E402
from pyhessk.backends.numpy.activations import ACTIVATIONS as NP_ACTIVATIONS  # noqa: E402


def test_auto_falls_back_to_numba_when_cpp_is_disabled(monkeypatch):
    monkeypatch.setattr(_dispatch, "_probes", {})
    monkeypatch.setenv("PYHESSK_DISABLE", "cpp")
    assert hk.MLP([2, 3, 1]).backend == "numba"
    assert "numba" in hk.available_backends() and "cpp" not in hk.available_backends()
    monkeypatch.setattr(_dispatch, "_probes", {})
    monkeypatch.setenv("PYHESSK_DISABLE", "cpp,numba")
    assert hk.MLP([2, 3, 1]).backend == "numpy"


def test_tables_cover_the_registry_with_its_ids():
    assert {name: row.id for name, row in activations.ACTIVATIONS.items()} == {a.name: a.id for a in _spec.ACTIVATIONS}
    assert {name: row.id for name, row in losses.LOSSES.items()} == {l.name: l.id for l in _spec.LOSSES}


@pytest.mark.parametrize("name", [a.name for a in _spec.ACTIVATIONS])
def test_scalar_activations_match_the_numpy_table(name):
    """φ, φ′, φ″ of each row against the NumPy engine in float64, kinks and both tails included."""
    row, ref = activations.ACTIVATIONS[name], NP_ACTIVATIONS[name]
    z = np.concatenate([np.linspace(-12, 12, 97), [0.0, -1e-9, 1e-9, -30.0, 30.0, 300.0, -300.0]])
    got = np.array([row.evaluate(x) for x in z])
    a = ref.f(z)
    want = np.stack([a, *ref.derivs(z, a)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose([row.value(x) for x in z], a, rtol=1e-13, atol=1e-15)
    spec = _spec.ACTIVATION_BY_NAME[name]
    if spec.dphi_at_zero is not None:
        assert row.evaluate(0.0)[1] == spec.dphi_at_zero
    if spec.d2_zero:
        assert not got[:, 2].any()


@pytest.mark.parametrize("name", [a.name for a in _spec.ACTIVATIONS])
def test_each_activation_through_the_engine(name):
    """The kernels' id → row selection: f = φ(x) for a one-unit hidden layer, and ∂f/∂b_1 = φ′(x)."""
    net = hk.MLP([1, 1, 1], activation=name, loss="mse", backend="numba")
    theta = np.array([1.0, 0.0, 1.0, 0.0])  # W1, b1, W2, b2
    x = np.linspace(-3, 3, 13)[:, None]
    ref = NP_ACTIVATIONS[name]
    np.testing.assert_allclose(net.forward(theta, x)[:, 0], ref.f(x[:, 0]), rtol=1e-13, atol=1e-15)
    c = net.linearize(theta, x, np.zeros_like(x))
    d1 = c.jvp(np.array([0.0, 1.0, 0.0, 0.0]))[:, 0]
    np.testing.assert_allclose(d1, ref.derivs(x[:, 0], ref.f(x[:, 0]))[0], rtol=1e-13, atol=1e-15)


def test_nothing_is_compiled_at_import(tmp_path):
    """Importing the engine (and making an MLP on it) compiles nothing: every dispatcher is still empty."""
    code = textwrap.dedent("""
        import numba, pyhessk as hk
        from pyhessk.backends.numba import _gnh, _passes, activations, losses, mlp
        hk.MLP([2, 3, 1], backend="numba")
        compiled = [f"{m.__name__}.{k}" for m in (_gnh, _passes, activations, losses, mlp)
                    for k, v in vars(m).items()
                    if isinstance(v, numba.core.dispatcher.Dispatcher) and v.signatures]
        found = sum(isinstance(v, numba.core.dispatcher.Dispatcher) for m in (_passes, activations) for v in vars(m).values())
        assert found > 10, found
        print("compiled:", compiled)
        assert not compiled, compiled
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("PYHESSK_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_engine_functions_are_cached_under_one_stamp_of_all_engine_sources():
    """Every engine function is cached through the engine's locators with the stamp over all its sources;
    a function outside the engine keeps Numba's own locator; and ``SOURCES`` holds every pyhessk module
    the engine's files import (a module missing there could change compiled code without a recompile)."""
    import ast

    import numba

    from pyhessk.backends.numba import _jit, _passes

    _passes.prefix(np.array([1, 2], dtype=np.int64))
    locator = _passes.prefix._cache._impl.locator
    assert isinstance(locator, tuple(_jit._ENGINE_LOCATORS)), type(locator)
    assert locator.get_source_stamp() == _jit.sources_stamp()

    def outside(x):
        return x + 1

    outside.__module__ = __name__
    foreign = numba.njit(cache=True)(outside)
    assert not isinstance(foreign._cache._impl.locator, tuple(_jit._ENGINE_LOCATORS))

    package = os.path.dirname(os.path.abspath(hk.__file__))
    engine = os.path.join("backends", "numba")
    imported = set()
    for rel in _jit.SOURCES:
        if os.path.dirname(rel) != engine:
            continue
        here = os.path.dirname(rel).split(os.sep)
        with open(os.path.join(package, rel)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                base = here[:len(here) - (node.level - 1)]
                names = [node.module] if node.module else [a.name for a in node.names]
                for name in names:
                    path = os.path.join(*base, *name.split("."))
                    imported.add(path + ".py" if os.path.isfile(os.path.join(package, path + ".py"))
                                 else os.path.join(path, "__init__.py"))
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
                mods = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(m and m.split(".")[0] == "pyhessk" for m in mods), (rel, mods)
    assert imported <= set(_jit.SOURCES), sorted(imported - set(_jit.SOURCES))
    assert {"_spec.py", os.path.join(engine, "activations.py")} <= imported


def test_an_edit_to_an_inlined_source_recompiles(tmp_path):
    """A loop of ``_passes.py`` compiles in the losses of ``losses.py``: after an edit to ``losses.py``
    alone, the next process must compile that loop again instead of loading it from the cache."""
    import shutil

    package = os.path.dirname(os.path.abspath(hk.__file__))
    shutil.copytree(package, tmp_path / "pyhessk", ignore=shutil.ignore_patterns("__pycache__"))
    code = textwrap.dedent("""
        import numpy as np
        from pyhessk.backends.numba import _passes
        _passes.output_hessian(0, np.ones((3, 2)), np.ones((3, 1, 2)), 1.0)
        stats = _passes.output_hessian.stats
        print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)  # the in-tree cache of the copy

    def hits_and_misses():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                             cwd=str(tmp_path))
        assert out.returncode == 0, out.stdout + out.stderr
        return tuple(int(x) for x in out.stdout.split())

    assert hits_and_misses() == (0, 1)
    assert hits_and_misses() == (1, 0)  # unchanged sources: loaded from the cache
    with open(tmp_path / "pyhessk" / "backends" / "numba" / "losses.py", "a") as f:
        f.write("\n# an edit\n")
    assert hits_and_misses() == (0, 1)


_CACHED_USE = """
import numba, numpy as np
import pyhessk as hk
from pyhessk.backends.numba import _blas, _dense, _gnh, _passes, activations, losses
net = hk.MLP([5, 7, 6, 3], activation=["sigmoid", "gelu"], loss="mse", bias=False, backend="numba")
rng = np.random.default_rng(1)
th = net.init(seed=2)
X, Y = rng.standard_normal((25, 5)), rng.standard_normal((25, 3))
N = net.num_params
V, U = rng.standard_normal((N, 4)), rng.standard_normal((25, 3, 2))
net.forward(th, X)
c = net.linearize(th, X, Y)
c.hvp(V), c.hvp(V[:, 0]), c.gnvp(V), c.jvp(V), c.vjp(U), c.hessian(), c.gnh(), c.empirical_fisher_diagonal()
e = c.gnh_entries()
idx = np.arange(N)
e.entries(idx, idx), e.block(idx[:3], idx[:9]), e.column(idx[[1]]), e.diagonal(), e.gnvp(V)
for method in ("mean", "median_of_means"):
    e.estimate(idx[:4], idx[:4], eps=0.5, delta=0.1, method=method, allow_exact=False)
c.gnh_solve(V, 0.5)
hits = misses = 0
for m in (_blas, _dense, _gnh, _passes, activations, losses):
    for v in vars(m).values():
        if isinstance(v, numba.core.dispatcher.Dispatcher):
            hits += sum(v.stats.cache_hits.values())
            misses += sum(v.stats.cache_misses.values())
print(hits, misses)
"""


def test_warmup_fills_the_cache_for_every_operation(tmp_path):
    """``python -m pyhessk warmup --dtypes float64`` into an empty cache; then another process, on another
    architecture, activations, loss and bias setting, uses every product and GNH read and compiles nothing:
    every engine function it calls loads from the cache."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("PYHESSK_DISABLE", None)
    warm = subprocess.run([sys.executable, "-m", "pyhessk", "warmup", "--dtypes", "float64"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "numba engine, float64: ready in" in warm.stdout
    use = subprocess.run([sys.executable, "-c", _CACHED_USE], env=env, capture_output=True, text=True,
                         timeout=300, cwd=str(tmp_path))
    assert use.returncode == 0, use.stdout + use.stderr
    hits, misses = (int(x) for x in use.stdout.split())
    assert misses == 0 and hits > 0, (hits, misses)


def test_warmup_arguments_are_checked(tmp_path):
    from pyhessk.warmup import warmup

    with pytest.raises(TypeError, match="dtypes must be float32 or float64, got float16"):
        warmup(["float16"])
    proc = subprocess.run([sys.executable, "-m", "pyhessk", "warmup", "--dtypes", "int8"], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 2 and "dtypes must be float32 or float64" in proc.stderr


def test_two_threads_with_two_snapshots_get_correct_answers():
    """The kernels release the GIL and share no state: concurrent products on two snapshots stay exact."""
    work = []
    for case in (CASES[3], CASES[9]):
        th, X, Y = case.data()
        V = np.random.default_rng(case.seed).standard_normal((th.size, 4))
        ref = case.net("numpy").linearize(th, X, Y)
        work.append((case.net("numba").linearize(th, X, Y), V, ref.hvp(V), ref.gnvp(V), ref.gnh_entries().diagonal()))
    for c, V, *_ in work:  # compile outside the threads
        c.hvp(V), c.gnvp(V), c.gnh_entries().diagonal()
    barrier = threading.Barrier(len(work))
    errors: list[str] = []

    def run(c, V, hv, gv, diag):
        barrier.wait()
        for _ in range(200):
            for name, got, want in (("hvp", c.hvp(V), hv), ("gnvp", c.gnvp(V), gv),
                                    ("diagonal", c.gnh_entries().diagonal(), diag)):
                if rel_err(got, want) > 1e-12:
                    errors.append(f"{name}: {rel_err(got, want)}")

    threads = [threading.Thread(target=run, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


# ---- G V from the stored GNH factors (gnh_gnvp) against the NumPy engine's ----------------------------------
GNVP_CASES = CASES + [
    Case((4, 6, 5, 3), "tanh", "sigmoid_cross_entropy", l2=0.3, bias=False, seed=21, n=9),
    Case((4, 6, 3), "gelu", "mse", l2=0.2, reduction="sum", seed=22, n=8),
]


def _factors(case, backend, dtype):
    th, X, Y = case.data(dtype)
    c = case.net(backend).linearize(th, X, Y)
    return c, c.gnh_entries()._fac


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", GNVP_CASES, ids=[c.id for c in GNVP_CASES])
def test_factored_gnvp_matches_the_numpy_engine(case, dtype, k):
    """Every loss, bias on/off, l2 on/off, k = 1 and a block: gnh_gnvp = the NumPy engine's, and = G V."""
    from pyhessk.backends.numba import BACKEND
    from pyhessk.backends.numpy import BACKEND as NUMPY

    c, fac = _factors(case, "numba", dtype)
    c_ref, fac_ref = _factors(case, "numpy", dtype)
    V = np.random.default_rng(case.seed + k).standard_normal((c_ref._model.num_params, k)).astype(dtype)
    V0 = V.copy()
    got = BACKEND.gnh_gnvp(fac, V)
    assert got.dtype == np.dtype(dtype) and got.shape == V.shape
    np.testing.assert_array_equal(V, V0)  # input untouched
    want = NUMPY.gnh_gnvp(fac_ref, V)
    tol = 1e-12 if dtype == "float64" else 2e-5
    assert rel_err(got, want) < tol
    # the same product through the R-passes (an independent route), and again with the workspace reused
    assert rel_err(got, c.gnvp(V)) < tol
    np.testing.assert_array_equal(BACKEND.gnh_gnvp(fac, V), got)


def test_factored_gnvp_oracle_and_workspace_reuse():
    """G V = G V with the NumPy engine's dense G (float64), for blocks of growing and shrinking k on one set
    of factors: the shared workspace never leaks one product into the next."""
    from pyhessk.backends.numba import BACKEND

    case = CASES[3]  # gelu, softmax, l2 = 0.1
    c, fac = _factors(case, "numba", "float64")
    G = case.net("numpy").linearize(*case.data()).gnh()
    rng = np.random.default_rng(5)
    for k in (3, 8, 1, 8, 2):
        V = rng.standard_normal((G.shape[0], k))
        assert rel_err(BACKEND.gnh_gnvp(fac, V), G @ V) < 1e-12


def test_products_reuse_one_workspace_per_linearization():
    """After the first product at the largest k, cached products reuse the linearization's buffer."""
    case = CASES[9]
    th, X, Y = case.data()
    c, ref = case.net("numba").linearize(th, X, Y), case.net("numpy").linearize(th, X, Y)
    rng = np.random.default_rng(0)
    V = rng.standard_normal((th.size, 6))
    c.hvp(V)
    buf = c._lin.ws._buf
    for k in (6, 1, 3):
        W = V[:, :k].copy()
        for name in ("hvp", "gnvp", "jvp"):
            assert rel_err(getattr(c, name)(W), getattr(ref, name)(W)) < 1e-12, name
    assert c._lin.ws._buf is buf


def test_threads_sharing_one_linearization_serialize_on_its_workspace():
    """Several threads on one snapshot and one set of factors, with different k (so the workspace grows while
    they run): every answer stays exact."""
    case = CASES[3]
    th, X, Y = case.data()
    c, ref = case.net("numba").linearize(th, X, Y), case.net("numpy").linearize(th, X, Y)
    e, e_ref = c.gnh_entries(), ref.gnh_entries()
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((th.size, k)) for k in (1, 4, 9)]
    want = [(ref.hvp(V), ref.gnvp(V), e_ref._engine.gnh_gnvp(e_ref._fac, V)) for V in blocks]
    c.hvp(blocks[0]), c.gnvp(blocks[0]), e._engine.gnh_gnvp(e._fac, blocks[0])  # compile outside the threads
    barrier = threading.Barrier(len(blocks))
    errors: list[str] = []

    def run(V, hv, gv, fv):
        barrier.wait()
        for _ in range(50):
            for name, got, exp in (("hvp", c.hvp(V), hv), ("gnvp", c.gnvp(V), gv),
                                   ("gnh_gnvp", e._engine.gnh_gnvp(e._fac, V), fv)):
                if rel_err(got, exp) > 1e-12:
                    errors.append(f"{name} k={V.shape[1]}: {rel_err(got, exp)}")

    threads = [threading.Thread(target=run, args=(V, *w)) for V, w in zip(blocks, want)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


@pytest.mark.parametrize("choice", ["numpy", "scipy"])
def test_gemms_run_on_the_chosen_blas(choice):
    """The engine's GEMMs call NumPy's bundled BLAS where NumPy has one (the one thread pool NumPy's own
    GEMMs use; 64-bit integers with NumPy's OpenBLAS wheels), or SciPy's (``PYHESSK_NUMBA_BLAS=scipy``,
    32-bit integers): both give the NumPy engine's products, float32 and float64, from the same on-disk
    cache of compiled code."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        sys.path.insert(0, "tests")
        from cases import CASES
        from oracles import rel_err
        from pyhessk.backends.numba import _blas
        print(_blas.BLAS)
        case = CASES[7]
        for dtype, tol in (("float64", 1e-12), ("float32", 1e-4)):
            th, X, Y = case.data(dtype)
            a, b = case.net("numba").linearize(th, X, Y), case.net("numpy").linearize(th, X, Y)
            V = np.random.default_rng(0).standard_normal((th.size, 3)).astype(dtype)
            for name in ("hvp", "gnvp"):
                err = rel_err(getattr(a, name)(V), getattr(b, name)(V))
                assert err < tol, (name, dtype, err)
    """)
    env = dict(os.environ, PYHESSK_NUMBA_BLAS=choice)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    from pyhessk.backends._blas import numpy_blas

    if choice == "scipy":
        assert out.stdout.startswith("SciPy's BLAS"), out.stdout
    elif numpy_blas() is not None:
        assert out.stdout.startswith("NumPy's BLAS"), out.stdout


def test_sample_groups_share_one_distribution_per_entry():
    """gnh_sample_groups: groups of independent draws (one group = gnh_sample with the same seed), whose
    pooled mean converges to the exact entries; seeded runs repeat."""
    from pyhessk.backends.numba import BACKEND

    case = Case((3, 5, 4), "tanh", "softmax_cross_entropy", l2=0.1, n=400, seed=31)
    th, X, Y = case.data()
    e = case.net("numba").linearize(th, X, Y).gnh_entries()
    fac = e._fac
    rows, cols = np.array([0, 3, 7, 25, 40]), np.array([0, 9, 7, 30, 2])
    exact = e.entries(rows, cols)
    one = BACKEND.gnh_sample_groups(fac, rows, cols, 50, 1, 3)
    np.testing.assert_array_equal(one[0], BACKEND.gnh_sample(fac, rows, cols, 50, 3))
    many = BACKEND.gnh_sample_groups(fac, rows, cols, 50, 400, 3)
    assert many.shape == (400, rows.size)
    np.testing.assert_array_equal(many, BACKEND.gnh_sample_groups(fac, rows, cols, 50, 400, 3))
    # the groups really differ (off the diagonal: for p = q, π ∝ ‖x_k‖² makes every draw exact)
    assert all(np.unique(many[:, t]).size > 100 for t in range(rows.size) if rows[t] != cols[t])
    scale = np.sqrt(e.entries(rows, rows) * e.entries(cols, cols))
    assert np.all(np.abs(many.mean(axis=0) - exact) <= 0.05 * scale)  # 20 000 draws: σ ≤ scale / 141


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weighted_dot_against_exact_sums(dtype):
    """The exact entries' kernel Σ_k w[k] x[o + k] y[o + k] (32 vectorized partial sums and a tail) against
    math.fsum of the same float64 terms, for lengths around the group of 32 and offsets into the rows."""
    import math

    import numba

    from pyhessk.backends.numba import _gnh

    @numba.njit
    def call(w, x, y, o, n):
        return _gnh._weighted_dot(w, x, y, o, n, np.empty(32))

    rng = np.random.default_rng(5)
    for n in (1, 2, 31, 32, 33, 63, 64, 65, 1000, 1023):
        w = rng.standard_normal(n)
        x, y = (rng.standard_normal(3 * n).astype(dtype) for _ in range(2))
        for o in (0, n, 2 * n):
            terms = w * x[o:o + n].astype(np.float64) * y[o:o + n].astype(np.float64)
            got = call(w, x, y, o, n)
            assert abs(got - math.fsum(terms)) <= 1e-15 * np.abs(terms).sum() * max(1, math.log2(n)), (n, o)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [33, 100, 517])
def test_exact_entries_at_batches_past_one_group_of_32(dtype, n):
    """Numba's exact entries against the NumPy engine's dense G (assembled from products, another code path)
    at batches whose n is past the kernel's group of 32 (the random architectures use n ≤ 6)."""
    case = Case((4, 6, 3), "tanh", "softmax_cross_entropy", l2=0.2, n=n, seed=n)
    th, X, Y = case.data("float64")
    G = case.net("numpy").linearize(th, X, Y).gnh()
    cast = (lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a) if dtype == "float32" else (lambda a: a)
    e = case.net("numba").linearize(cast(th), cast(X), cast(Y)).gnh_entries()
    N = th.size
    rows, cols = np.repeat(np.arange(N), 3), np.random.default_rng(0).integers(0, N, 3 * N)
    got = e.entries(rows, cols)
    assert got.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 2e-5
    assert np.abs(got - G[rows, cols]).max() <= tol * np.abs(G).max()


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 255, 256, 257, 4097])
def test_sampler_search_tree_locates_like_searchsorted(n):
    """The sampler's running sums and their 16-ary search tree (pyhessk/backends/numba/_gnh.py) against NumPy:
    sums nondecreasing and equal to cumsum to rounding; a draw u lands on min(searchsorted(C, u, right), n − 1),
    on random u, on every boundary u = C[k] itself and with zero weights among the samples."""
    from pyhessk.backends.numba import _gnh

    rng = np.random.default_rng(n)
    a, nu = rng.standard_normal((2, n)), rng.random((2, n))
    nu[0, rng.random(n) < 0.3] = 0.0  # samples of zero weight
    off = _gnh.tree_levels(n)
    tree = np.full(off[-1], np.inf)
    tree[0] = 0.0
    w = np.abs(a[0] * nu[0]) * np.abs(a[1] * nu[1])
    if not w.any():
        w[0] = nu[0, 0] = 1.0
    total = _gnh._running_sums(a[0], nu[0], a[1], nu[1], tree[1:], n)
    C = tree[1:n + 1]
    assert np.all(np.diff(C) >= 0) and total == C[-1]
    np.testing.assert_allclose(C, np.cumsum(w), rtol=1e-13, atol=0)
    _gnh._build_tree(tree, off, n)
    us = np.concatenate([rng.random(2000) * total, C, [0.0, total]])
    got = np.array([_gnh._find_draw(tree, off, u, n) for u in us])
    np.testing.assert_array_equal(got, np.minimum(np.searchsorted(C, us, side="right"), n - 1))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sampler_kernel_matches_a_numpy_replica_on_the_same_uniforms(dtype):
    """_gnh.sample on given uniforms against the estimator of SPEC §3 written in NumPy (cumsum, searchsorted,
    the factors gathered from S's own layout): the same draws, so the same estimates to rounding. With
    float32 factors too: the weights and terms are products in float64 (as in the C++ engine), so the
    estimate is that of the float32 numbers to double rounding."""
    from pyhessk.backends.numba import BACKEND, _gnh

    case = Case((3, 5, 4), "tanh", "softmax_cross_entropy", n=300, seed=5)
    th, X, Y = case.data(dtype)
    e = case.net("numba").linearize(th, X, Y).gnh_entries()
    fac, g, n, d = e._fac, e._fac.geo, e._fac.n, e._fac.d
    rows, cols = np.array([0, 4, 19, 21, 30, 43]), np.array([2, 4, 33, 40, 11, 43])  # N = 44: biases included
    u = np.random.default_rng(0).random((rows.size, 70))
    BACKEND.gnh_sample(fac, rows[:1], cols[:1], 2, 0)  # makes the sample-major copy
    got = _gnh.sample(fac.Sk, fac.nu, fac.AT, g.sizes, g.woff, rows, cols, u, 1, n, d, fac.scale, 0.0)[0]
    ones, cum = np.ones(n, fac.S.dtype), np.concatenate([[0], np.cumsum(g.sizes)])
    for t, (p, q) in enumerate(zip(rows, cols)):
        (sp, ap, _), (sq, aq, _) = (_gnh._factor(fac.S, fac.AT, ones, g.sizes, g.woff, cum, x, n, d) for x in (p, q))
        (nup, _), (nuq, _) = (_gnh._nu(fac.nu, fac.AT, ones, g.sizes, g.woff, cum, x, n) for x in (p, q))
        sp, ap, sq, aq, nup, nuq = (np.asarray(x, np.float64) for x in (sp, ap, sq, aq, nup, nuq))
        xp, xq = sp.reshape(d, n) * ap, sq.reshape(d, n) * aq  # x_k = a_p[k] S[i, :, k]
        w = np.abs(ap * nup) * np.abs(aq * nuq)  # ‖x_k‖‖y_k‖ from the stored norms ν = ‖S[i, :, k]‖
        if dtype == "float64":
            np.testing.assert_allclose(w, np.linalg.norm(xp, axis=0) * np.linalg.norm(xq, axis=0), rtol=1e-12)
        k = np.minimum(np.searchsorted(np.cumsum(w), u[t] * w.sum(), side="right"), n - 1)
        want = fac.scale * np.mean(np.sum(xp[:, k] * xq[:, k], axis=0) * w.sum() / w[k])
        tol = 1e-10 if dtype == "float64" else 2.0**-24 * 1.001  # float32: one rounding of the result
        assert abs(got[t] - want) <= tol * abs(want), (t, got[t], want)
