"""The examples in the toolkit's docstrings run (doctest)."""

import doctest

import pytest

import pyhessk.linalg
import pyhessk.optim.hessian_free
import pyhessk.optim.levenberg_marquardt
import pyhessk.optim.scipy_bridge
import pyhessk.spectral

MODULES = [pyhessk.linalg, pyhessk.spectral, pyhessk.optim.hessian_free, pyhessk.optim.levenberg_marquardt,
           pyhessk.optim.scipy_bridge]


@pytest.mark.parametrize("module", MODULES, ids=[m.__name__ for m in MODULES])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_public_names():
    import pyhessk as hk

    for name in ("eigsh", "trace", "diagonal", "spectral_density", "slq", "check_hessian", "scipy_problem",
                 "as_linear_operator", "inverse_operator", "cg", "outer_product", "sherman_morrison",
                 "becker_lecun_diagonal"):
        assert name in hk.__all__ and callable(getattr(hk, name))
    assert hk.optim.HessianFree and hk.optim.LevenbergMarquardt and hk.optim.scipy_problem is hk.scipy_problem
