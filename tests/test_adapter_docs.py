"""docs/adapters.md runs as written (its Python blocks in order, in one namespace), and the adapters' docstring
examples pass (doctest)."""

import doctest
import importlib
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "adapters.md"


def test_adapters_guide_runs():
    if not DOC.exists():
        pytest.skip("docs/adapters.md is not beside the tests (installed package run)")
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 5, "the adapters guide lost its examples"
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)


@pytest.mark.parametrize("name", ["pyhessk.functional", "pyhessk.torch", "pyhessk.jax"])
def test_docstring_examples(name):
    if name != "pyhessk.functional":
        pytest.importorskip(name.split(".")[1])
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
