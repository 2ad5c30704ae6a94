"""The CUDA engine on a machine without a GPU: its sources compile (nvcc for pyhessk._core_cuda, NVRTC for the
CuPy path), the kernel registry matches the C++ signatures, and the host-side logic (launch shapes, argument
checks, probing, array handling, errors) behaves. tests/test_cuda_engine.py runs the engine itself on a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pyhessk as hk
from pyhessk import _arrays, _dispatch, _spec
from pyhessk.backends.cuda import _kernels, _nvrtc, _providers, _source

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
KERNEL_HEADERS = sorted((CSRC / "cuda" / "kernels").glob("*.cuh"))
needs_sources = pytest.mark.skipif(not (ROOT / "setup.py").is_file() or not CSRC.is_dir(),
                                   reason="the C++/CUDA sources are not beside the tests (installed package run)")


# ---- the registry against the C++ sources -----------------------------------------------------------------
_GLOBAL = re.compile(r"PYHESSK_GLOBAL void (\w+)\(([^)]*)\)", re.S)
_KIND = {"index_t": "i", "T": "s", "const T*": "p", "T*": "p", "const index_t*": "I", "double*": "D", "const double*": "D",
         "unsigned long long": "u"}


def _cxx_kernels() -> dict[str, str]:
    out = {}
    for header in KERNEL_HEADERS:
        for name, params in _GLOBAL.findall(header.read_text(encoding="utf-8")):
            kinds = []
            for p in params.split(","):
                ctype = " ".join(p.split()[:-1]).replace(" *", "*")
                assert ctype in _KIND, f"{header.name}: {name} has a parameter of unmapped type {ctype!r}"
                kinds.append(_KIND[ctype])
            out[name] = "".join(kinds)
    return out


@needs_sources
def test_registry_matches_the_kernel_signatures():
    cxx = _cxx_kernels()
    assert set(cxx) == set(_kernels.KERNELS)
    for name, spec in _kernels.KERNELS.items():
        expected = spec.args if spec.per_item else "i" + spec.args  # grid-stride kernels take the count first
        assert cxx[name] == expected, name


@needs_sources
def test_every_kernel_has_a_core_launcher_and_a_host_emulation():
    table = (CSRC / "cuda" / "launch_cuda.cu").read_text(encoding="utf-8")
    emulated = set(re.findall(r"void emu_(\w+)\(", (CSRC / "cuda" / "emulation" / "host_kernels.cpp").read_text()))
    for name, spec in _kernels.KERNELS.items():
        assert f'"{name}"' in table, name
        # the launcher refuses a per-item kernel's launch unless its blocks have kReduceThreads threads
        per_item = re.search(rf'add\(t, "{name}", [^;]*, true\);', table) is not None
        assert per_item == spec.per_item, name
    assert emulated == set(_kernels.KERNELS)


def test_template_tags_range_over_the_registry():
    assert _kernels.tag_values("act") == [a.id for a in _spec.ACTIVATIONS]
    assert _kernels.tag_values("loss") == [spec.id for spec in _spec.LOSSES]
    assert _kernels.name_expression("activation_kernel", "float32", 1) == "pyhessk::cuda::activation_kernel<float, 1>"
    assert _kernels.name_expression("hadamard_kernel", "float64", None) == "pyhessk::cuda::hadamard_kernel<double>"
    with pytest.raises(ValueError, match="template tag"):
        _kernels.name_expression("hadamard_kernel", "float64", 3)
    n_tagged = sum(len(_kernels.tag_values(k.tag)) for k in _kernels.KERNELS.values())
    assert len(_kernels.all_name_expressions("float32")) == n_tagged


# ---- launch shapes and argument checks ---------------------------------------------------------------------
@pytest.mark.parametrize("total, blocks", [(1, 1), (256, 1), (257, 2), (10**6, 3907), (10**12, _kernels.MAX_BLOCKS)])
def test_elementwise_launch_shape_covers_every_element(total, blocks):
    b, t = _kernels.launch_shape("hadamard_kernel", total)
    assert (b, t) == (blocks, _kernels.THREADS)
    assert b * t >= total or b == _kernels.MAX_BLOCKS  # the grid-stride loop covers the rest


def test_per_item_launch_shape_and_limits():
    assert _kernels.launch_shape("entries_kernel", 7) == (7, _kernels.REDUCE_THREADS)
    assert _kernels.launch_shape("entries_kernel", 0) == (0, 0)
    with pytest.raises(ValueError, match="grid limit"):
        _kernels.launch_shape("sample_kernel", 2**31)
    with pytest.raises(ValueError, match="negative"):
        _kernels.launch_shape("hadamard_kernel", -1)


def test_launch_arguments_are_checked_against_the_registry():
    f64 = np.zeros(4)
    _providers.check_launch("hadamard_kernel", np.dtype(np.float64), (f64, f64, f64), np)
    with pytest.raises(TypeError, match="expected 3 arguments"):
        _providers.check_launch("hadamard_kernel", np.dtype(np.float64), (f64, f64), np)
    with pytest.raises(TypeError, match="argument 1 must be a contiguous float64"):
        _providers.check_launch("hadamard_kernel", np.dtype(np.float64), (f64, f64.astype(np.float32), f64), np)
    with pytest.raises(TypeError, match="argument 0 must be a contiguous"):
        _providers.check_launch("hadamard_kernel", np.dtype(np.float64), (np.zeros((4, 2))[:, 0], f64, f64), np)
    with pytest.raises(TypeError, match="argument 0 must be an integer"):
        _providers.check_launch("add_bias_kernel", np.dtype(np.float64), (2.5, f64, f64), np)
    with pytest.raises(TypeError, match="must be a contiguous int64"):
        _providers.check_launch("gather_kernel", np.dtype(np.float64), (1, 1, f64, f64, f64, f64, f64), np)
    _providers.check_launch("rforward_kernel", np.dtype(np.float64), (1, 4, None, 0, None, f64, None), np)


def test_launch_plan_checks_then_shapes():
    """Both GPU providers launch through launch_plan: checked arguments, the registry's shape, None for 0 items."""
    f64, t64 = np.zeros(4), np.dtype(np.float64)
    spec, blocks, threads = _providers.launch_plan("hadamard_kernel", t64, (f64, f64, f64), np, 4)
    assert spec is _kernels.KERNELS["hadamard_kernel"]
    assert (blocks, threads) == _kernels.launch_shape("hadamard_kernel", 4) and blocks > 0
    assert _providers.launch_plan("hadamard_kernel", t64, (f64, f64, f64), np, 0) is None
    with pytest.raises(TypeError, match="expected 3 arguments"):
        _providers.launch_plan("hadamard_kernel", t64, (f64, f64), np, 4)


def test_gemm_operands_are_checked():
    A, B, C = np.zeros(6), np.zeros(12), np.zeros(8)
    _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4)
    _providers.check_gemm(True, True, 2, 4, 3, A, 2, B, 3, C, 4)
    with pytest.raises(ValueError, match="C holds 8 elements"):
        _providers.check_gemm(False, False, 2, 5, 3, A, 3, np.zeros(15), 5, C, 5)
    with pytest.raises(ValueError, match="A holds"):
        _providers.check_gemm(False, False, 2, 4, 3, A, 2, B, 4, C, 4)  # lda < K
    with pytest.raises(TypeError, match="mixed dtypes"):
        _providers.check_gemm(False, False, 2, 4, 3, A, 3, B.astype(np.float32), 4, C, 4)


def test_batched_gemm_operands_are_checked():
    """Strided batched GEMMs: the last matrix of each operand must fit; a stride of 0 shares an operand."""
    A, B, C = np.zeros(6), np.zeros(3 * 12), np.zeros(3 * 8)
    _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4, batch=3, strides=(0, 12, 8))
    with pytest.raises(ValueError, match="B holds 36 elements, too few for 3 × 3 × 4"):
        _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4, batch=3, strides=(0, 13, 8))
    with pytest.raises(ValueError, match="C holds"):
        _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4, batch=4, strides=(0, 0, 8))
    with pytest.raises(ValueError, match="batch stride of A is negative"):
        _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4, batch=3, strides=(-1, 12, 8))
    _providers.check_gemm(False, False, 2, 4, 3, A, 3, B, 4, C, 4, batch=0, strides=(0, 99, 99))  # nothing to do


# ---- NVRTC: the CuPy path's source compiles without a GPU ----------------------------------------------------
def _nvrtc_or_skip() -> None:
    try:
        _nvrtc.library()
    except OSError as exc:
        pytest.skip(f"no NVRTC library to compile with ({exc})")


def test_kernel_source_is_self_contained():
    src = _source.kernel_source()
    assert not re.search(r'#\s*include\s+"', src)
    for name in _kernels.KERNELS:
        assert f"void {name}(" in src


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nvrtc_compiles_every_instantiation(dtype):
    _nvrtc_or_skip()
    exprs = _kernels.all_name_expressions(dtype)
    result = _nvrtc.compile_source(_source.kernel_source(), exprs, _source.NVRTC_OPTIONS)
    assert set(result.lowered) == set(exprs)
    for lowered in result.lowered.values():
        assert f".entry {lowered}(" in result.ptx
    assert "warning" not in result.log.lower(), result.log


def test_nvrtc_reports_compile_errors():
    _nvrtc_or_skip()
    with pytest.raises(RuntimeError, match="compilation failed"):
        _nvrtc.compile_source("__global__ void k() { undeclared(); }", [], ())


# ---- nvcc: pyhessk._core_cuda builds (a compile and link check) and checks its arguments ---------------------
def _find_nvcc() -> str | None:
    for cand in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


@pytest.fixture(scope="module")
def core_cuda(tmp_path_factory):
    """pyhessk._core_cuda built from this checkout into a temporary directory (one architecture) and loaded."""
    if not (ROOT / "setup.py").is_file():
        pytest.skip("the C++/CUDA sources are not beside the tests (installed package run)")
    if _find_nvcc() is None:
        pytest.skip("nvcc not found: the CUDA compile check needs the CUDA toolkit")
    out, tmp = tmp_path_factory.mktemp("core_cuda"), tmp_path_factory.mktemp("core_cuda_tmp")
    env = dict(os.environ, PYHESSK_BUILD_CPP="0", PYHESSK_BUILD_CUDA="1", PYHESSK_CUDA_ARCHS="90")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out), "--build-temp",
                           str(tmp)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if "cuBLAS headers were not found" in proc.stdout + proc.stderr:
        pytest.skip("the cuBLAS headers are missing (pip install nvidia-cublas)")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    built = sorted(out.glob("pyhessk/_core_cuda*.so"))
    assert built, "setup.py reported success but produced no _core_cuda module"
    spec = importlib.util.spec_from_file_location("_core_cuda", built[0])  # not registered in sys.modules
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_core_cuda_builds_and_matches_the_registry(core_cuda):
    assert sorted(core_cuda.kernel_names()) == sorted(_kernels.KERNELS)
    assert core_cuda.activation_ids() == {a.name: a.id for a in _spec.ACTIVATIONS}
    assert core_cuda.loss_ids() == {spec.name: spec.id for spec in _spec.LOSSES}
    info = core_cuda.build_info()
    assert info["archs"] == "90" and info["version"] == hk.__version__


def test_core_cuda_checks_arguments_before_launching(core_cuda):
    with pytest.raises(ValueError, match="no kernel nope"):
        core_cuda.launch("nope", 0, -1, 1, 1, 256, 0, [])
    with pytest.raises(ValueError, match="takes 4 arguments, got 3"):
        core_cuda.launch("hadamard_kernel", 0, -1, 1, 1, 256, 0, [1, None, None])
    with pytest.raises(ValueError, match="argument 1 must be a device array"):
        core_cuda.launch("hadamard_kernel", 0, -1, 1, 1, 256, 0, [1, 2, None, None])
    with pytest.raises(ValueError, match="argument 0 must be an integer"):
        core_cuda.launch("hadamard_kernel", 0, -1, 1, 1, 256, 0, [1.5, None, None, None])
    with pytest.raises(TypeError, match="bool"):
        core_cuda.launch("hadamard_kernel", 0, -1, 1, 1, 256, 0, [True, None, None, None])
    with pytest.raises(ValueError, match="launch shape"):
        core_cuda.launch("hadamard_kernel", 0, -1, 1, 0, 256, 0, [1, None, None, None])
    with pytest.raises(ValueError, match="kReduceThreads"):
        core_cuda.launch("entries_kernel", 0, -1, 1, 1, 128, 0, [])
    with pytest.raises(TypeError, match="__cuda_array_interface__"):
        core_cuda.gemm(False, False, 1, 1, 1, 1.0, np.zeros(1), 1, np.zeros(1), 1, 0.0, np.zeros(1), 1, 0, False)


@needs_sources
def test_host_compiler_compiles_the_binding():
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    pybind11 = pytest.importorskip("pybind11")
    proc = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", f"-I{CSRC}", f"-I{pybind11.get_include()}",
                           *(f"-I{p}" for p in _python_includes()), str(CSRC / "bindings" / "module_cuda.cpp")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _python_includes() -> list[str]:
    import sysconfig

    return sorted({sysconfig.get_paths()["include"], sysconfig.get_paths()["platinclude"]})


# ---- probing, dispatch and array handling without a GPU ------------------------------------------------------
def _gpu_visible() -> bool:
    from pyhessk.backends import cuda

    try:
        return cuda.gpu_status(cuda._cupy())[0]
    except RuntimeError:
        return False


needs_no_gpu = pytest.mark.skipif(_gpu_visible(), reason="checks the behaviour on machines without a GPU")


@needs_no_gpu
def test_probe_says_why_the_engine_cannot_run():
    import pyhessk.backends.cuda as cuda

    assert cuda.BACKEND is None
    assert re.search(r"(no GPU visible|cupy not installed|not built)", cuda.UNAVAILABLE_REASON)
    if _dispatch.probe("cuda")[0] is None:  # (the emulation may stand in under PYHESSK_TEST_CUDA_EMULATION)
        with pytest.raises(RuntimeError, match=r"backend 'cuda' cannot run: .*(GPU|cupy)"):
            hk.MLP([2, 1], backend="cuda")
        assert "cuda" not in hk.available_backends()
        assert "GPU arrays cannot run here" in hk.show_config()


class _FakeRuntime:
    def __init__(self, count=None, error=None):
        self.count, self.error = count, error

    def getDeviceCount(self):  # noqa: N802 - CuPy's name
        if self.error:
            raise self.error
        return self.count


class _FakeCupy:
    def __init__(self, runtime):
        self.cuda = type("cuda", (), {"runtime": runtime})()


def test_gpu_status_reasons():
    from pyhessk.backends.cuda import gpu_status

    ok, why = gpu_status(_FakeCupy(_FakeRuntime(error=RuntimeError("driver too old"))))
    assert not ok and "no GPU visible" in why and "driver too old" in why
    ok, why = gpu_status(_FakeCupy(_FakeRuntime(count=0)))
    assert not ok and "0 devices" in why


def test_make_engine_validates_its_arguments():
    from pyhessk.backends.cuda import make_engine

    with pytest.raises(ValueError, match="path must be one of"):
        make_engine(path="opencl")
    with pytest.raises(TypeError, match="allow_tf32 must be True or False"):
        make_engine(allow_tf32="yes")


@needs_sources  # the host emulation is built from csrc/cuda/emulation
def test_dispatch_accepts_an_engine_object(monkeypatch):
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no host C++ compiler to build the kernel emulation")
    from pyhessk.backends.cuda._emulation import emulated_engine

    monkeypatch.setenv("PYHESSK_CUDA_SOURCE", str(CSRC))  # an installed package ships the headers only

    engine = emulated_engine()
    net = hk.MLP([3, 2], backend=engine)
    assert net.backend == "cuda" and _dispatch.get(engine) is engine
    with pytest.raises(TypeError, match="backend must be a string"):
        hk.MLP([3, 2], backend=object())


class _FakeCai:
    def __init__(self, ptr=0, shape=(3,)):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f8", "data": (ptr, False), "version": 3}


class _FakeDlpack:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack_device__(self):
        return (self.device_type, 0)

    def __dlpack__(self, stream=None):
        raise NotImplementedError


def test_gpu_arrays_are_recognised():
    assert _arrays.is_gpu_array(_FakeCai())
    assert _arrays.is_gpu_array(_FakeDlpack(2))  # kDLCUDA
    assert not _arrays.is_gpu_array(_FakeDlpack(1))  # kDLCPU
    assert not _arrays.is_gpu_array(np.zeros(3))
    assert not _arrays.is_gpu_array([1.0, 2.0])


def test_null_gpu_pointers_are_refused_before_reaching_cupy():
    pytest.importorskip("cupy")
    with pytest.raises(TypeError, match="theta is a GPU array with a null data pointer"):
        _arrays.to_cupy(_FakeCai(), "theta")


def test_auto_with_gpu_inputs_and_no_gpu_engine_names_the_reason():
    if _dispatch.probe("cuda")[0] is not None:
        pytest.skip("a cuda engine is available here")
    net = hk.MLP([3, 2], backend="auto")
    with pytest.raises(TypeError, match=r"theta is a GPU array, but the 'cuda' engine cannot run here"):
        net.forward(_FakeCai(shape=(8,)), np.zeros((2, 3)))


def test_cpu_engine_still_refuses_gpu_arrays():
    net = hk.MLP([3, 2], backend="numpy")
    with pytest.raises(TypeError, match=r"X is a GPU array.*'cuda' engine"):
        net.forward(net.init(), _FakeCai(shape=(2, 3)))


# ---- the device providers' marshalling, with CuPy and _core_cuda replaced by recorders ----------------------
class _RecordingCupy:
    """Just enough of CuPy for NvrtcProvider.launch: RawModule compiles nothing, functions record their calls."""

    ndarray = np.ndarray

    def __init__(self):
        self.modules, self.calls = [], []
        recorder = self

        class RawModule:
            def __init__(self, code, options, name_expressions):
                recorder.modules.append((code, options, tuple(name_expressions)))
                self.names = set(name_expressions)

            def get_function(self, expr):
                assert expr in self.names
                return lambda grid, block, args: recorder.calls.append((expr, grid, block, args))

        self.RawModule = RawModule
        runtime = type("runtime", (), {"getDevice": staticmethod(lambda: 0)})
        self.cuda = type("cuda", (), {"runtime": runtime})


def test_nvrtc_provider_marshals_arguments_and_caches_modules():
    fake = _RecordingCupy()
    prov = _providers.NvrtcProvider(fake)
    f32 = np.dtype(np.float32)
    Z, d1 = np.zeros(6, np.float32), np.zeros(6, np.float32)
    prov.launch("activation_kernel", f32, 1, 6, 3, None, Z, d1, None)
    prov.launch("activation_kernel", f32, 1, 6, 3, None, Z, d1, None)
    prov.launch("activation_kernel", f32, 2, 6, 3, None, Z, d1, None)
    prov.launch("axpy_kernel", f32, None, 6, 0.5, Z, d1)
    prov.launch("entries_kernel", f32, None, 2, 4, 1, Z, Z, *(np.zeros(2, np.int64),) * 4, Z, 0.25, Z)
    prov.launch("hadamard_kernel", f32, None, 0, Z, Z, Z)  # empty: no launch
    assert len(fake.modules) == 3  # (float, act 1), (float, act 2), (float, untagged)
    assert fake.modules[0][2] == ("pyhessk::cuda::activation_kernel<float, 1>",
                                  "pyhessk::cuda::activation_value_kernel<float, 1>")
    assert all(options == _source.NVRTC_OPTIONS for _, options, _ in fake.modules)
    expr, grid, block, args = fake.calls[0]
    assert (expr, grid, block) == ("pyhessk::cuda::activation_kernel<float, 1>", (1,), (256,))
    assert isinstance(args[0], np.int64) and args[0] == 6 and isinstance(args[1], np.int64)
    assert isinstance(args[2], np.uint64) and args[2] == 0 and args[3] is Z and isinstance(args[5], np.uint64)
    _, _, _, args = fake.calls[3]
    assert isinstance(args[1], np.float32) and args[1] == np.float32(0.5)
    expr, grid, block, args = fake.calls[4]
    assert grid == (2,) and block == (256,) and isinstance(args[0], np.int64) and args[0] == 4  # no count first
    assert len(fake.calls) == 5


def test_core_provider_marshals_arguments():
    calls = []

    class Core:
        @staticmethod
        def launch(*a):
            calls.append(a)

    class FakeCupy(_RecordingCupy):
        def __init__(self):
            super().__init__()
            stream = type("stream", (), {"ptr": 1234})
            self.cuda.get_current_stream = staticmethod(lambda: stream)

    prov = _providers.CoreProvider(FakeCupy(), Core())
    f64 = np.dtype(np.float64)
    x = np.zeros(5)
    prov.launch("axpy_kernel", f64, None, 5, np.float64(2.0), x, x)
    prov.launch("loss_head_kernel", f64, 1, 3, 2, x, x, x, x, 0.5, x)
    assert calls[0] == ("axpy_kernel", 1, -1, 5, 1, 256, 1234, [5, 2.0, x, x])
    assert calls[1][:7] == ("loss_head_kernel", 1, 1, 3, 1, 256, 1234) and calls[1][7][:2] == [3, 2]
    assert type(calls[0][7][1]) is float


@needs_sources
def test_wheels_ship_the_kernel_headers(tmp_path):
    """setup.py's build_py copies csrc/common and csrc/cuda/kernels to pyhessk/include, the NVRTC path's source
    in an installed wheel; the source compiled from there is the checkout's."""
    import setuptools

    if int(setuptools.__version__.split(".")[0]) < 77:  # pip builds in isolation with the required version
        pytest.skip(f"running setup.py directly needs setuptools>=77 (pyproject's build requirement), "
                    f"this environment has {setuptools.__version__}")
    env = dict(os.environ, PYHESSK_BUILD_CPP="0", PYHESSK_BUILD_CUDA="0")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    include = tmp_path / "pyhessk" / "include"
    assert _source.kernel_source(str(include)) == _source.kernel_source(str(CSRC))
