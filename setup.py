"""Build definition. Extension modules are found by convention under csrc/ (see STYLE.md §3.2).

Environment knobs: PYHESSK_BUILD_CPP=0 skips the C++ engine (a pure-Python install).
Until csrc/ holds an engine, the package is pure Python.
"""

import os
from glob import glob

from setuptools import setup


def extensions():
    sources = sorted(glob("csrc/cpu/*.cpp"))
    binding = "csrc/bindings/module_cpu.cpp"
    if os.environ.get("PYHESSK_BUILD_CPP", "1") == "0" or not sources or not os.path.exists(binding):
        return []
    from pybind11.setup_helpers import Pybind11Extension

    return [Pybind11Extension("pyhessk._core_cpu", sources + [binding], include_dirs=["csrc"], cxx_std=17)]


setup(ext_modules=extensions())
