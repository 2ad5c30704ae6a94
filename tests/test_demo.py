"""The README's demonstration runs and its checks hold (synthetic data always; the digits when scikit-learn is there)."""

import numpy as np
import pytest

from pyhessk import demo
from pyhessk.__main__ import main


def check(result):
    assert result["hvp_fd_error"] < 1e-5
    assert result["symmetry"] < 1e-12
    assert result["entries_vs_products"] < 1e-10


def test_demo_on_synthetic_classes():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 10)) * 2
    y = rng.integers(0, 4, 300)
    X = centers[y] + rng.standard_normal((300, 10))
    lines = []
    result = demo.run(X, y, hidden=6, steps=20, out=lines.append)
    check(result)
    assert result["accuracy"] > 0.8
    assert any("Hessian-vector product" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("  ")) >= 5  # the table of entries


def test_demo_on_the_digits(capsys):
    pytest.importorskip("sklearn")
    X, y = demo.load_digits()
    assert X.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    check(demo.run(X, y, steps=30))
    main(["config"])
    assert "numpy" in capsys.readouterr().out
