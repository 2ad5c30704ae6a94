"""Every other engine against the NumPy reference engine on the declarative cases.

float64 must agree to 1e-10 relative. float32 follows the "at most twice the naive error" rule: an
engine's float32 error against the float64 reference may be at most 2× the NumPy engine's float32 error
(plus a floor), so tolerances scale with the problem instead of being magic numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from cases import CASE_IDS, CASES, curvature_reads
from oracles import rel_err


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_engine_matches_numpy(case, other_backend):
    th, X, Y = case.data("float64")
    rng = np.random.default_rng(0)
    V = rng.standard_normal((th.size, 3))
    U = rng.standard_normal((case.n, case.sizes[-1], 2))
    ref64 = curvature_reads(case.net("numpy").linearize(th, X, Y), V, U)
    got64 = curvature_reads(case.net(other_backend).linearize(th, X, Y), V, U)
    for key in ref64:
        assert rel_err(got64[key], ref64[key]) < 1e-10, key

    cast = lambda a: a.astype(np.float32) if a.dtype.kind == "f" else a  # noqa: E731
    args32 = [cast(a) for a in (th, X, Y)]
    ref32 = curvature_reads(case.net("numpy").linearize(*args32), cast(V), cast(U))
    got32 = curvature_reads(case.net(other_backend).linearize(*args32), cast(V), cast(U))
    for key in ref64:
        assert key == "loss" or got32[key].dtype == np.float32, key
        assert rel_err(got32[key], ref64[key]) <= 2 * rel_err(ref32[key], ref64[key]) + 1e-6, key
