"""Build definition: the C++ CPU engine pyhessk._core_cpu and, on request, the CUDA module pyhessk._core_cuda
(sources found by convention under csrc/).

Environment knobs:
  PYHESSK_BUILD_CPP=0   skip the C++ engine (a pure-Python install; the other engines serve)
  PYHESSK_BUILD_CPP=1   require it: a failed build fails the install instead of being skipped
  PYHESSK_DEBUG=1       -O1 -g with assertions, for debugging
  PYHESSK_SANITIZE=1    build with -fsanitize=address,undefined (see README: run with the ASan runtime preloaded)
  PYHESSK_BUILD_CUDA=1  also build pyhessk._core_cuda with nvcc (csrc/cuda/*.cu + csrc/bindings/module_cuda.cpp);
                        a failure fails the install. =auto builds it when nvcc and the cuBLAS headers are found
                        and skips it on failure. Unset or 0 (the default): not built, because nvcc takes about
                        a minute per architecture; the 'cuda' engine then compiles the same kernels at run time
                        through CuPy/NVRTC (docs/cuda.md).
  PYHESSK_CUDA_ARCHS    semicolon list of SM versions for _core_cuda (default "80;90"; the last also as PTX)
  CUDA_HOME             the CUDA toolkit (default: the directory above the nvcc on PATH, or /usr/local/cuda)

If the compiler is missing or the build fails, the install still succeeds with a message saying so, and
pyhessk runs on its other engines (pyhessk.show_config() tells which).
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from glob import glob

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
WANT = os.environ.get("PYHESSK_BUILD_CPP", "auto")
WANT_CUDA = os.environ.get("PYHESSK_BUILD_CUDA", "0")


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
    # flags); -fno-math-errno lets sqrt be one instruction, and its loops vectorize, instead of a call that
    # may set errno (no code reads errno). Results, NaN and Inf semantics are unchanged (no -ffast-math).
    args = (["-O1", "-g"] if debug else ["-O3", "-DNDEBUG"]) + ["-fno-trapping-math", "-fno-math-errno"]
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


def find_nvcc():
    """Path of nvcc: $CUDA_HOME/bin, then PATH, then /usr/local/cuda/bin; None if absent."""
    for cand in (os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"), shutil.which("nvcc") or "",
                 "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def find_cuda_home(nvcc):
    """The toolkit directory (with include/cuda_runtime.h): $CUDA_HOME, the one above nvcc, /usr/local/cuda."""
    for cand in (os.environ.get("CUDA_HOME", ""), os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
                 "/usr/local/cuda"):
        if cand and os.path.isfile(os.path.join(cand, "include", "cuda_runtime.h")):
            return cand
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def find_cublas(cuda_home):
    """(include dir, library dir, library file name) of cuBLAS: the nvidia-cublas wheel, else the toolkit."""
    bases = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None:
        for base in spec.submodule_search_locations or []:
            bases += sorted(glob(os.path.join(base, "*")))
    bases.append(cuda_home)
    for base in bases:
        inc = os.path.join(base, "include")
        if not os.path.isfile(os.path.join(inc, "cublas_v2.h")):
            continue
        for libdir in (os.path.join(base, "lib"), os.path.join(base, "lib64")):
            libs = sorted(f for f in glob(os.path.join(libdir, "libcublas.so*")) if "Lt" not in os.path.basename(f))
            if libs:
                return inc, libdir, os.path.basename(libs[0])
    return None


def cuda_extensions():
    if WANT_CUDA not in ("1", "auto"):
        return []
    binding = "csrc/bindings/module_cuda.cpp"
    sources = sorted(glob("csrc/cuda/*.cu"))  # sorted: reproducible builds
    nvcc = find_nvcc()
    cuda_home = find_cuda_home(nvcc) if nvcc else ""
    cublas = find_cublas(cuda_home) if nvcc else None
    if not (nvcc and cublas and sources):
        why = "nvcc was not found" if not nvcc else "the cuBLAS headers were not found (pip install nvidia-cublas)"
        if WANT_CUDA == "1":
            raise RuntimeError(f"PYHESSK_BUILD_CUDA=1 but {why}")
        print(f"pyhessk: pyhessk._core_cuda is not built ({why}); the 'cuda' engine will use CuPy/NVRTC")
        return []
    from pybind11.setup_helpers import Pybind11Extension

    inc, libdir, libname = cublas
    archs = [a.strip() for a in os.environ.get("PYHESSK_CUDA_ARCHS", "80;90").split(";") if a.strip()]
    ext = Pybind11Extension(
        "pyhessk._core_cuda",
        [binding],
        include_dirs=["csrc"],
        cxx_std=17,
        define_macros=[("PYHESSK_VERSION", f'"{version()}"')],
        library_dirs=[os.path.join(cuda_home, "lib64"), libdir],
        extra_link_args=["-lcudart_static", "-ldl", "-lrt", "-lpthread", f"-l:{libname}", f"-Wl,-rpath,{libdir}"],
    )
    ext.optional = WANT_CUDA != "1"
    ext.cuda = {"nvcc": nvcc, "sources": sources, "archs": archs,
                "includes": ["csrc", os.path.join(cuda_home, "include"), inc]}
    return [ext]


def nvcc_objects(ext, build_temp):
    """Compile the extension's .cu sources with nvcc; returns the object files."""
    cfg = ext.cuda
    gencode = []
    for i, arch in enumerate(cfg["archs"]):
        code = f"[sm_{arch},compute_{arch}]" if i == len(cfg["archs"]) - 1 else f"sm_{arch}"
        gencode += ["-gencode", f"arch=compute_{arch},code={code}"]
    debug = os.environ.get("PYHESSK_DEBUG") == "1"
    flags = ["-std=c++17", "-Xcompiler", "-fPIC", "-O1" if debug else "-O3", "-lineinfo",
             f"-DPYHESSK_VERSION=\"{version()}\"", f"-DPYHESSK_CUDA_ARCHS=\"{';'.join(cfg['archs'])}\""]
    flags += [f"-I{d}" for d in cfg["includes"]]
    objects = []
    os.makedirs(build_temp, exist_ok=True)
    for src in cfg["sources"]:
        obj = os.path.join(build_temp, os.path.basename(src) + ".o")
        cmd = [cfg["nvcc"], *flags, *gencode, "-c", src, "-o", obj]
        print(" ".join(cmd))
        subprocess.run(cmd, check=True)
        objects.append(obj)
    return objects


def build_ext_class():
    from pybind11.setup_helpers import build_ext, has_flag

    class BuildExt(build_ext):
        """Adds OpenMP when the compiler has it, and explains a skipped optional build."""

        def build_extensions(self):
            openmp = has_flag(self.compiler, "-fopenmp")
            if not openmp:
                print("pyhessk: the compiler has no OpenMP; the C++ engine's sweeps run on one thread")
            for ext in self.extensions:
                if openmp and not hasattr(ext, "cuda"):
                    ext.extra_compile_args.append("-fopenmp")
                    ext.extra_link_args.append("-fopenmp")
            super().build_extensions()

        def build_extension(self, ext):
            try:
                if hasattr(ext, "cuda"):
                    ext.extra_objects = nvcc_objects(ext, os.path.join(self.build_temp, "cuda"))
                super().build_extension(ext)
            except Exception as exc:  # noqa: BLE001 - any compiler failure
                if not getattr(ext, "optional", False):
                    raise
                if hasattr(ext, "cuda"):
                    print(f"pyhessk: pyhessk._core_cuda was not built ({exc}); the 'cuda' engine will compile its "
                          "kernels through CuPy/NVRTC instead.", file=sys.stderr)
                    return
                print(f"pyhessk: the C++ engine was not built ({exc}); pyhessk will use its other engines. "
                      "Install a C++17 compiler and reinstall to get it.", file=sys.stderr)

    return BuildExt


def build_py_class():
    from setuptools.command.build_py import build_py

    class BuildPy(build_py):
        """Ships the kernel headers (csrc/common, csrc/cuda/kernels) in the package as pyhessk/include, where the
        cuda engine's NVRTC path reads them in an installed wheel."""

        def run(self):
            super().run()
            for sub, pattern in (("common", "*.h"), (os.path.join("cuda", "kernels"), "*.cuh")):
                dest = os.path.join(self.build_lib, "pyhessk", "include", sub)
                os.makedirs(dest, exist_ok=True)
                for src in sorted(glob(os.path.join(HERE, "csrc", sub, pattern))):
                    self.copy_file(src, os.path.join(dest, os.path.basename(src)))

    return BuildPy


exts = extensions() + cuda_extensions()
cmdclass = {"build_py": build_py_class()}
if exts:
    cmdclass["build_ext"] = build_ext_class()
setup(ext_modules=exts, cmdclass=cmdclass)
