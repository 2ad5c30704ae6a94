"""Build definition: the C++ CPU engine pyhessk._core_cpu (sources found by convention under csrc/).

Environment knobs:
  PYHESSK_BUILD_CPP=0   skip the C++ engine (a pure-Python install; the other engines serve)
  PYHESSK_BUILD_CPP=1   require it: a failed build fails the install instead of being skipped
  PYHESSK_DEBUG=1       -O1 -g with assertions, for debugging
  PYHESSK_SANITIZE=1    build with -fsanitize=address,undefined (see README: run with the ASan runtime preloaded)

If the compiler is missing or the build fails, the install still succeeds with a message saying so, and
pyhessk runs on its other engines (pyhessk.show_config() tells which).
"""

import os
import re
import sys
from glob import glob

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
WANT = os.environ.get("PYHESSK_BUILD_CPP", "auto")


def version():
    with open(os.path.join(HERE, "pyhessk", "_version.py"), encoding="utf-8") as fh:
        return re.search(r'__version__ = "([^"]+)"', fh.read()).group(1)


def extensions():
    binding = "csrc/bindings/module_cpu.cpp"
    sources = sorted(glob("csrc/cpu/*.cpp"))  # sorted: reproducible builds
    if WANT == "0" or not sources or not os.path.exists(binding):
        return []
    from pybind11.setup_helpers import Pybind11Extension

    debug = os.environ.get("PYHESSK_DEBUG") == "1"
    # -fno-trapping-math lets the branch-free elementwise functions vectorize (no code reads FP exception
    # flags); NaN and Inf semantics are unchanged (no -ffast-math).
    args = (["-O1", "-g"] if debug else ["-O3", "-DNDEBUG"]) + ["-fno-trapping-math"]
    link = []
    if os.environ.get("PYHESSK_SANITIZE") == "1":
        args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        link += ["-fsanitize=address,undefined"]
    ext = Pybind11Extension(
        "pyhessk._core_cpu",
        sources + [binding],
        include_dirs=["csrc"],
        cxx_std=17,
        define_macros=[("PYHESSK_VERSION", f'"{version()}"')],
        extra_compile_args=args,
        extra_link_args=link,
    )
    ext.optional = WANT != "1"
    return [ext]


def build_ext_class():
    from pybind11.setup_helpers import build_ext, has_flag

    class BuildExt(build_ext):
        """Adds OpenMP when the compiler has it, and explains a skipped optional build."""

        def build_extensions(self):
            openmp = has_flag(self.compiler, "-fopenmp")
            if not openmp:
                print("pyhessk: the compiler has no OpenMP; the C++ engine's sweeps run on one thread")
            for ext in self.extensions:
                if openmp:
                    ext.extra_compile_args.append("-fopenmp")
                    ext.extra_link_args.append("-fopenmp")
            super().build_extensions()

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - any compiler failure
                if not getattr(ext, "optional", False):
                    raise
                print(f"pyhessk: the C++ engine was not built ({exc}); pyhessk will use its other engines. "
                      "Install a C++17 compiler and reinstall to get it.", file=sys.stderr)

    return BuildExt


exts = extensions()
setup(ext_modules=exts, cmdclass={"build_ext": build_ext_class()} if exts else {})
