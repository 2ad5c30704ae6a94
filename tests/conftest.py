"""Shared fixtures: every engine-behaviour test runs on every registered CPU engine (skipped with the probe's
reason where an engine cannot run) and on the cuda engine where a GPU is visible, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

import os

from pyhessk import _dispatch

if os.environ.get("PYHESSK_TEST_CUDA_EMULATION") == "1":  # the GPU engine's code on the CPU (docs/cuda.md)
    from pyhessk.backends.cuda import _emulation

    _emulation.install_for_tests()

CPU_ENGINES = [e for e in _dispatch.ENGINES if e != "cuda"]
# The engines the suite runs on: the CPU engines, and "cuda" wherever it can run (a GPU is visible).
ENGINES_UNDER_TEST = [e for e in _dispatch.ENGINES if e != "cuda" or _dispatch.probe("cuda")[0] is not None]


def engine_params(engines=ENGINES_UNDER_TEST):
    params = []
    for name in engines:
        ok, reason = _dispatch.probe(name)
        marks = [] if ok is not None else [pytest.mark.skip(reason=f"engine {name!r}: {reason}")]
        if name == "cuda":
            marks.append(pytest.mark.cuda)
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(params=engine_params())
def backend(request) -> str:
    """The name of an engine that can run here."""
    return request.param


@pytest.fixture(params=engine_params([e for e in ENGINES_UNDER_TEST if e != "numpy"]))
def other_backend(request) -> str:
    """An engine other than the NumPy reference (for parity tests)."""
    return request.param


@pytest.fixture(params=["float64", "float32"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
