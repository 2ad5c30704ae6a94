"""The ``pyhessk demo``: synthetic data always (fast), the digits once when scikit-learn is there."""

import sys

import numpy as np
import pytest

from pyhessk import demo
from pyhessk.__main__ import main


def synthetic(seed=0, n=300, classes=4, features=10):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    return centers[y] + rng.standard_normal((n, features)), y


def check(result):
    assert result["hvp_fd_error"] < 1e-5
    assert result["symmetry"] < 1e-12
    assert result["entries_vs_products"] < 1e-10
    top_h, top_g = result["top_hessian"], result["top_gnh"]
    assert np.all(np.diff(top_h) <= 0) and np.all(np.diff(top_g) <= 0) and top_g[-1] >= 0
    assert result["bottom_hessian"][0] <= top_h[-1]
    assert np.isclose(result["hutchpp_gnh"], result["trace_gnh"], rtol=0.25)
    assert top_g[0] <= result["trace_gnh"]


def test_demo_on_synthetic_classes(tmp_path):
    X, y = synthetic()
    lines = []
    result = demo.run(X, y, hidden=6, budget=0.2, out=lines.append, report=tmp_path / "report", backend="numpy")
    check(result)
    assert result["accuracy"] > 0.8
    assert set(result["losses"]) == {"gradient descent + momentum", "Hessian-free (Martens)", "Levenberg–Marquardt"}
    assert all(loss < 1.0 for loss in result["losses"].values())
    assert any("Hessian-vector product" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("   ")) >= 5  # the table of entries
    assert any("top-5 eigenvalues of H" in line for line in lines)
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    for text in ("Hessian-free", "Levenberg–Marquardt", "top-5 eigenvalues", "Timings", "engine `numpy`"):
        assert text in summary
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plots" in summary
    else:
        for png in ("loss_curves.png", "spectral_density.png", "gnh_block.png"):
            assert (tmp_path / "report" / png).read_bytes().startswith(b"\x89PNG")
            assert f"({png})" in summary
    # the exact eigenvalues and traces at the returned parameters agree with the dense matrices
    from pyhessk import MLP

    net = MLP([10, 6, 4], activation="tanh", loss="cross_entropy", l2=1e-5, backend="numpy")
    order = np.random.default_rng(0).permutation(len(y))[: int(0.8 * len(y))]
    c = net.linearize(result["theta"], X[order], y[order])
    H, G = c.hessian(), c.gnh()
    assert np.allclose(result["top_hessian"], np.linalg.eigvalsh(H)[::-1][:5], rtol=1e-6)
    assert np.allclose(result["top_gnh"], np.linalg.eigvalsh(G)[::-1][:5], rtol=1e-6)
    assert np.isclose(result["trace_hessian"], np.trace(H), rtol=1e-10)


def test_demo_without_matplotlib_and_tqdm(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = synthetic(1, n=120, classes=3, features=5)
    result = demo.run(X, y, hidden=4, budget=0.05, out=lambda line: None, report=tmp_path, progress=True)
    check(result)
    assert "no plots" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert not list(tmp_path.glob("*.png"))


def test_demo_on_the_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    X, y = demo.load_digits()
    assert X.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    main(["demo", "--budget", "1", "--hidden", "16", "--out", str(tmp_path), "--no-progress"])
    printed = capsys.readouterr().out
    assert "Hessian-free" in printed and "top-5 eigenvalues of G" in printed
    assert (tmp_path / "summary.md").exists()
    main(["config"])
    assert "numpy" in capsys.readouterr().out
