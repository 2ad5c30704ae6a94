"""The examples in the public docstrings run (doctest on the installed modules)."""

import doctest

import pytest

import pyhessk.curvature
import pyhessk.mlp


@pytest.mark.parametrize("module", [pyhessk.mlp, pyhessk.curvature])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
