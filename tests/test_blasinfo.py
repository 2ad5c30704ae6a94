"""NumPy's BLAS report: the kernels OpenBLAS runs, the OPENBLAS_CORETYPE hint, and where both are shown."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys

import pytest

import pyhessk as hk
from pyhessk import _blasinfo
from pyhessk._blasinfo import AVX512_FLAGS, blas_report, coretype_hint, describe
from pyhessk.backends._blas import loaded_numpy_blas

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEYS = {"library", "version", "core", "threads", "filepath", "source", "coretype_env", "cpu_avx512",
        "cpu_avx512_flags", "hint"}


@pytest.mark.parametrize("library", ["openblas", "scipy-openblas", "OpenBLAS"])
@pytest.mark.parametrize("core", ["Haswell", "zen", "SANDYBRIDGE", "Nehalem", "Prescott", "Core2"])
def test_hint_for_an_avx2_core_on_an_avx512_cpu(library, core):
    hint = coretype_hint(library, core, None, ["fpu", "avx2", *AVX512_FLAGS, "avx512_bf16"])
    assert hint is not None
    assert f"its {core} kernels" in hint
    assert "AVX-512" in hint
    assert "OPENBLAS_CORETYPE=SkylakeX" in hint and "before Python starts" in hint
    assert "NumPy's BLAS" in hint
    assert coretype_hint(library, core, "", [f.upper() for f in AVX512_FLAGS]) == hint  # empty = unset


@pytest.mark.parametrize("env", ["SkylakeX", "Haswell", "zen"])
def test_no_hint_when_the_variable_is_set(env):
    assert coretype_hint("openblas", "Haswell", env, AVX512_FLAGS) is None


@pytest.mark.parametrize("core", ["SkylakeX", "cooperlake", "SapphireRapids", "unknown", "", None])
def test_no_hint_for_an_avx512_or_unknown_core(core):
    assert coretype_hint("openblas", core, None, AVX512_FLAGS) is None


@pytest.mark.parametrize("missing", AVX512_FLAGS)
def test_no_hint_when_the_cpu_lacks_one_avx512_flag(missing):
    assert coretype_hint("openblas", "Haswell", None, [f for f in AVX512_FLAGS if f != missing]) is None


def test_no_hint_when_the_cpu_flags_are_unknown():
    assert coretype_hint("openblas", "Haswell", None, None) is None


@pytest.mark.parametrize("library", ["mkl", "blis", "accelerate", "unknown", "", None])
def test_no_hint_for_another_library(library):
    assert coretype_hint(library, "Haswell", None, AVX512_FLAGS) is None


def test_report_on_this_machine():
    info = blas_report()
    assert set(info) == KEYS
    assert info["coretype_env"] == (os.environ.get("OPENBLAS_CORETYPE") or None)
    assert isinstance(info["core"], str) and info["core"]
    if sys.platform.startswith("linux"):
        flags = info["cpu_avx512_flags"]
        assert isinstance(flags, list) and set(flags) <= set(AVX512_FLAGS)
        assert info["cpu_avx512"] is (len(flags) == len(AVX512_FLAGS))
    assert info["hint"] == coretype_hint(info["library"], info["core"], info["coretype_env"],
                                         info["cpu_avx512_flags"])
    if list(loaded_numpy_blas()) and "openblas" in info["library"]:
        assert info["core"] != "unknown" and info["version"] and info["threads"] >= 1


def test_the_c_api_agrees_with_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    handles = list(loaded_numpy_blas())
    by_symbols = _blasinfo._from_symbols(handles)
    if by_symbols is None:
        pytest.skip("NumPy's BLAS is not a bundled OpenBLAS")
    by_pool = _blasinfo._from_threadpoolctl({os.path.basename(p) for _, p in handles})
    assert by_pool is not None, threadpoolctl.threadpool_info()
    for key in ("library", "version", "core", "threads", "filepath"):
        assert by_symbols[key] == by_pool[key], key


def test_report_without_threadpoolctl(monkeypatch):
    if not list(loaded_numpy_blas()):
        pytest.skip("NumPy's BLAS is not a bundled library")
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # makes the import fail
    info = blas_report()
    assert info["source"] in ("OpenBLAS C API (ctypes)", "numpy.show_config")
    if info["source"] == "OpenBLAS C API (ctypes)":
        assert info["library"] == "openblas" and info["core"] != "unknown"


def _forced(core: str) -> dict:
    code = "import json, numpy; from pyhessk._blasinfo import blas_report; print(json.dumps(blas_report()))"
    env = {**os.environ, "OPENBLAS_CORETYPE": core}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_forced_core_is_reported_and_gets_no_hint():
    """OpenBLAS reads OPENBLAS_CORETYPE when it loads; the report shows the forced core and gives no hint."""
    info = blas_report()
    if "openblas" not in info["library"] or info["core"] == "unknown":
        pytest.skip("NumPy's BLAS is not an OpenBLAS whose core can be read")
    if info["cpu_avx512"]:
        forced = _forced("SkylakeX")
        assert (forced["core"], forced["coretype_env"], forced["hint"]) == ("SkylakeX", "SkylakeX", None)
    forced = _forced("Nehalem")  # SSE4.2: runs on every x86-64 CPU made since 2009
    if forced["core"].lower() not in _blasinfo.PRE_AVX512_CORES:
        pytest.skip(f"this OpenBLAS has no Nehalem core (reports {forced['core']})")
    assert (forced["core"], forced["coretype_env"], forced["hint"]) == ("Nehalem", "Nehalem", None)


def test_describe_names_library_version_core_and_threads():
    info = {"library": "openblas", "version": "0.3.31", "core": "SkylakeX", "threads": 2,
            "filepath": "libscipy_openblas64_.so", "coretype_env": "SkylakeX"}
    assert describe(info) == ("openblas 0.3.31, core SkylakeX (OPENBLAS_CORETYPE=SkylakeX), 2 threads "
                              "[libscipy_openblas64_.so]")
    info.update(coretype_env=None, threads=None, filepath=None, version=None)
    assert describe(info) == "openblas, core SkylakeX, threads unknown"


def test_show_config_has_the_blas_line(capsys):
    info = blas_report()
    text = hk.show_config()
    assert capsys.readouterr().out.strip() == text.strip()
    blas = [line for line in text.splitlines() if line.startswith("  BLAS   ")]
    assert blas == [f"  BLAS   {describe(info)}; NumPy's, shared by the CPU engines"]
    assert ("  hint: " in text) is (info["hint"] is not None)


def test_show_config_prints_the_hint(monkeypatch, capsys):
    hint = coretype_hint("openblas", "Haswell", None, AVX512_FLAGS)
    fake = {"library": "openblas", "version": "0.3.31", "core": "Haswell", "threads": 2, "filepath": None,
            "coretype_env": None, "hint": hint}
    monkeypatch.setattr(_blasinfo, "blas_report", lambda: fake)
    lines = hk.show_config().splitlines()
    capsys.readouterr()
    assert lines[-2:] == ["  BLAS   openblas 0.3.31, core Haswell, 2 threads; NumPy's, shared by the CPU engines",
                          f"  hint: {hint}"]


def test_bench_header_records_the_core(monkeypatch):
    if not (ROOT / "bench" / "report.py").exists():
        pytest.skip("bench/ is not beside the tests (installed package run)")
    monkeypatch.syspath_prepend(str(ROOT))
    report = importlib.import_module("bench.report")
    sysinfo = importlib.import_module("bench.sysinfo")
    blas = sysinfo.blas_config()
    assert blas["core"] == blas_report()["core"]
    assert blas["coretype_env"] == (os.environ.get("OPENBLAS_CORETYPE") or None)

    def versions(blas: dict) -> str:
        text = report.render({"pyhessk_bench": {"blas": blas}}, {}, "numpy", "cmd")
        return next(line for line in text.splitlines() if line.startswith("- **Versions**"))

    base = {"name": "scipy-openblas", "version": "0.3.31", "config": "OpenBLAS 0.3.31 DYNAMIC_ARCH"}
    assert "core" not in versions(base)  # runs recorded before the core was
    assert "(`OpenBLAS 0.3.31 DYNAMIC_ARCH`), core SkylakeX (OPENBLAS_CORETYPE=SkylakeX), pyhessk" in versions(
        {**base, "core": "SkylakeX", "coretype_env": "SkylakeX"})
    assert "core Haswell (OPENBLAS_CORETYPE unset)" in versions({**base, "core": "Haswell", "coretype_env": None})
