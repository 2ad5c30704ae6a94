"""The registry is the one list of activations and losses: every engine implements all of it, with the
same conventions, and each activation's φ′ and φ″ match finite differences of its φ."""

from __future__ import annotations

import numpy as np
import pytest

import pyhessk as hk
from pyhessk import _spec
from pyhessk.backends.numpy.activations import ACTIVATIONS as NP_ACTIVATIONS
from pyhessk.backends.numpy.losses import LOSSES as NP_LOSSES

ACT_NAMES = [a.name for a in _spec.ACTIVATIONS]


def test_ids_are_unique_and_contiguous():
    for table in (_spec.ACTIVATIONS, _spec.LOSSES):
        assert sorted(x.id for x in table) == list(range(len(table)))
        assert len({x.name for x in table}) == len(table)


def test_required_names_and_aliases():
    assert set(ACT_NAMES) == {"identity", "tanh", "sigmoid", "relu", "leaky_relu", "softplus", "gelu", "silu", "sin"}
    assert _spec.loss("cross_entropy").name == "softmax_cross_entropy"
    assert _spec.loss("binary_cross_entropy").name == "sigmoid_cross_entropy"
    assert _spec.activation("Leaky-ReLU").name == "leaky_relu"
    with pytest.raises(ValueError, match="activation"):
        _spec.activation("elu")


def test_numpy_engine_implements_the_whole_registry():
    assert set(NP_ACTIVATIONS) == set(ACT_NAMES)
    assert set(NP_LOSSES) == {l.name for l in _spec.LOSSES}


@pytest.mark.parametrize("name", ACT_NAMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_derivatives_match_finite_differences(name, dtype):
    spec = _spec.ACTIVATION_BY_NAME[name]
    act = NP_ACTIVATIONS[name]
    z = np.linspace(-4, 4, 161)
    if not spec.smooth:
        z = z[np.abs(z) > 1e-2]
    h = 1e-5
    f = lambda x: act.f(x.astype(np.float64))  # noqa: E731
    d1_fd = (f(z + h) - f(z - h)) / (2 * h)
    d1, d2 = act.derivs(z.astype(dtype), act.f(z.astype(dtype)))
    assert d1.dtype == dtype and d2.dtype == dtype and act.f(z.astype(dtype)).dtype == dtype
    tol = 1e-8 if dtype == np.float64 else 2e-6
    assert np.abs(d1 - d1_fd).max() < tol * 10
    d1f = lambda x: act.derivs(x, act.f(x))[0]  # noqa: E731
    d2_fd = (d1f(z + h) - d1f(z - h)) / (2 * h)
    assert np.abs(d2 - d2_fd).max() < tol * 10
    if spec.d2_zero:
        assert not d2.any()


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_kink_convention_through_the_api(backend, name):
    """φ′(0) is PyTorch's autodiff value: 0 for relu, the slope 0.01 for leaky_relu (SPEC §1)."""
    net = hk.MLP([1, 1, 1], activation=name, loss="mse", backend=backend)
    theta = np.array([1.0, 0.0, 2.0, 0.0])  # W1, b1, W2, b2: z1 = x, f = 2 φ(z1)
    c = net.linearize(theta, np.zeros((1, 1)), np.zeros((1, 1)))
    # ∂f/∂b1 = W2 φ′(0)
    assert c.jvp(np.array([0.0, 1.0, 0.0, 0.0]))[0, 0] == 2.0 * _spec.ACTIVATION_BY_NAME[name].dphi_at_zero


def test_available_backends_and_auto(monkeypatch):
    from pyhessk import _dispatch

    assert "numpy" in hk.available_backends()
    best = next(e for e in _dispatch.AUTO_ORDER_CPU if e in hk.available_backends())
    assert hk.MLP([2, 1]).backend == best
    monkeypatch.setattr(_dispatch, "_probes", {})
    monkeypatch.setenv("PYHESSK_DISABLE", "cpp,numba")
    assert hk.MLP([2, 1]).backend == "numpy"
    monkeypatch.setenv("PYHESSK_DISABLE", "numpy")
    monkeypatch.setattr(_dispatch, "_probes", {})
    with pytest.raises(RuntimeError, match="PYHESSK_DISABLE"):
        hk.MLP([2, 1], backend="numpy")


def test_show_config_reports_every_engine(capsys):
    text = hk.show_config()
    assert capsys.readouterr().out.strip() == text.strip()
    for name in ("cuda", "cpp", "numba", "numpy"):
        assert f"  {name}" in text
    assert hk.__version__ in text
