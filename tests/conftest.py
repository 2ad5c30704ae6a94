"""Shared fixtures: every engine-behaviour test runs on every registered CPU engine (skipped with the probe's
reason where an engine cannot run), in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from pyhessk import _dispatch

CPU_ENGINES = [e for e in _dispatch.ENGINES if e != "cuda"]


def engine_params(engines=CPU_ENGINES):
    params = []
    for name in engines:
        ok, reason = _dispatch.probe(name)
        marks = [] if ok is not None else [pytest.mark.skip(reason=f"engine {name!r}: {reason}")]
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(params=engine_params())
def backend(request) -> str:
    """The name of an engine that can run here."""
    return request.param


@pytest.fixture(params=engine_params([e for e in CPU_ENGINES if e != "numpy"]))
def other_backend(request) -> str:
    """An engine other than the NumPy reference (for parity tests)."""
    return request.param


@pytest.fixture(params=["float64", "float32"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
