"""Random architectures, activations and losses (hypothesis) against the independent oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cases import Case
from conftest import engine_params
from oracles import explicit_gnh, fd_gradient, kink_margin, objective, rel_err

from pyhessk import _spec

ACTS = [a.name for a in _spec.ACTIVATIONS]
LOSSES = [l.name for l in _spec.LOSSES]

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw, max_width=5, max_layers=4):
    L = draw(st.integers(1, max_layers))
    sizes = tuple(draw(st.lists(st.integers(1, max_width), min_size=L + 1, max_size=L + 1)))
    loss = draw(st.sampled_from(LOSSES))
    if loss == "softmax_cross_entropy" and sizes[-1] == 1:
        sizes = (*sizes[:-1], 2)
    acts = tuple(draw(st.lists(st.sampled_from(ACTS), min_size=L - 1, max_size=L - 1)))
    return Case(sizes, acts if acts else "tanh", loss,
                l2=draw(st.sampled_from([0.0, 0.3])),
                reduction=draw(st.sampled_from(["mean", "sum"])),
                bias=draw(st.booleans()),
                n=draw(st.integers(1, 6)),
                seed=draw(st.integers(0, 2**16)),
                targets=draw(st.sampled_from(["default", "probabilities"])))


def smooth_enough(case: Case, theta, X) -> bool:
    """Finite differences are meaningless across a ReLU kink: keep pre-activations away from 0 there."""
    kinked = {"relu", "leaky_relu"} & set((case.activation,) if isinstance(case.activation, str) else case.activation)
    return not kinked or kink_margin(case, theta, X) > 2e-2


@pytest.mark.parametrize("backend", engine_params())
@SETTINGS
@given(case=cases())
def test_gradient_hvp_and_gnvp_against_oracles(backend, case):
    theta, X, Y = case.data()
    assume(smooth_enough(case, theta, X))
    net = case.net(backend)
    c = net.linearize(theta, X, Y)
    assert rel_err(c.grad, fd_gradient(lambda t: objective(case, t, X, Y), theta)) < 1e-6 or np.linalg.norm(c.grad) < 1e-9
    V = np.random.default_rng(case.seed).standard_normal((c.num_params, 2))
    G = explicit_gnh(case, theta, X, Y)
    assert rel_err(c.gnvp(V), G @ V) < 1e-6
    h = 1e-5
    fd = np.stack([(net.grad(theta + h * v, X, Y) - net.grad(theta - h * v, X, Y)) / (2 * h) for v in V.T], axis=1)
    HV = c.hvp(V)
    assert np.linalg.norm(HV - fd) <= 1e-6 * max(np.linalg.norm(fd), 1.0)
    v, w = V.T
    assert abs(v @ c.hvp(w) - w @ HV[:, 0]) <= 1e-12 * np.linalg.norm(v) * max(np.linalg.norm(HV[:, 0]), 1.0)


@pytest.mark.parametrize("backend", engine_params())
@SETTINGS
@given(case=cases(max_width=6))
def test_float32_agrees_with_float64(backend, case):
    th64, X64, Y64 = case.data("float64")
    assume(smooth_enough(case, th64, X64))
    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    th32, X32, Y32 = (cast(a) for a in (th64, X64, Y64))
    net = case.net(backend)
    c64 = net.linearize(th32.astype(np.float64), X32.astype(np.float64),
                        Y32.astype(np.float64) if Y32.dtype.kind == "f" else Y32)
    c32 = net.linearize(th32, X32, Y32)
    V = np.random.default_rng(case.seed).standard_normal((c64.num_params, 3))
    for name in ("hvp", "gnvp"):
        r64 = getattr(c64, name)(V)
        r32 = getattr(c32, name)(V.astype(np.float32))
        assert r32.dtype == np.float32
        assert np.linalg.norm(r32 - r64) <= 1e-4 * max(np.linalg.norm(r64), 1e-3)
    e64, e32 = c64.gnh_entries(), c32.gnh_entries()
    assert np.abs(e32.diagonal() - e64.diagonal()).max() <= 1e-4 * max(np.abs(e64.diagonal()).max(), 1e-3)


@pytest.mark.parametrize("backend", engine_params())
@SETTINGS
@given(case=cases(max_width=6), data=st.data())
def test_factored_gnvp_on_any_route_against_the_explicit_gnh(backend, case, data):
    """G V from the stored factors, with a random set of hidden layers carried through W_{l+1}, one vector and
    a block: the explicit GNH and the plain product in float64, and the float64 result in float32."""
    L = len(case.sizes) - 1
    carry = tuple(data.draw(st.lists(st.booleans(), min_size=L - 1, max_size=L - 1))) + (False,)
    k = data.draw(st.sampled_from([1, 3]))
    th64, X64, Y64 = case.data("float64")
    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    th32, X32, Y32 = (cast(a) for a in (th64, X64, Y64))
    assume(smooth_enough(case, th32.astype(np.float64), X32.astype(np.float64)))
    net = case.net(backend)
    c64 = net.linearize(th32.astype(np.float64), X32.astype(np.float64),
                        Y32.astype(np.float64) if Y32.dtype.kind == "f" else Y32)
    c32 = net.linearize(th32, X32, Y32)
    V = np.random.default_rng(case.seed).standard_normal((c64.num_params, k))
    G = explicit_gnh(case, th32.astype(np.float64), X32.astype(np.float64),
                     Y32.astype(np.float64) if Y32.dtype.kind == "f" else Y32)
    e64, e32 = c64.gnh_entries(), c32.gnh_entries()
    r64 = np.asarray(c64._engine.gnh_gnvp(e64._fac, V, carry))
    assert r64.shape == V.shape and r64.dtype == np.float64
    assert rel_err(r64, G @ V) < 1e-6  # the oracle's Jacobians are central differences
    # against the plain product (R-forward, H_out, backward) to float64 rounding, which is relative to the
    # terms summed: |G_pq| ≤ √(G_pp G_qq) bounds Σ_k |x_pk||x_qk| (Cauchy–Schwarz)
    root = np.sqrt(np.maximum(np.diag(G), 0))
    assert np.linalg.norm(r64 - c64.gnvp(V)) <= 1e-12 * np.linalg.norm(np.outer(root, root) @ np.abs(V))
    r32 = np.asarray(c32._engine.gnh_gnvp(e32._fac, V.astype(np.float32), carry))
    assert r32.dtype == np.float32
    assert np.linalg.norm(r32 - r64) <= 1e-4 * max(np.linalg.norm(r64), 1e-3)
