"""The C++ engine's kernels under AddressSanitizer and UndefinedBehaviorSanitizer, without Python in the
process: csrc/tests/memcheck_driver.cpp runs every activation, loss, dtype and block size, with NaN in every
work buffer until it is written."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DRIVER = ROOT / "csrc" / "tests" / "memcheck_driver.cpp"


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the driver")
def test_kernels_are_clean_under_asan_and_ubsan(tmp_path):
    if not DRIVER.exists():
        pytest.skip("the C++ sources are not beside the tests (installed package run)")
    exe = tmp_path / "driver"
    sources = [str(DRIVER), *map(str, sorted((ROOT / "csrc" / "cpu").glob("*.cpp")))]
    # PYHESSK_POISON_BUFFERS: work buffers grow with NaN instead of unset numbers, so a read before a write
    # fails the driver's checks (the sanitizers do not see reads of unset memory); -fopenmp: the entry loops
    # then share their entries with helper threads (csrc/cpu/helpers.h), checked against one thread
    flags = ["-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
             "-fno-sanitize-recover=undefined", "-DPYHESSK_POISON_BUFFERS", "-fopenmp", f"-I{ROOT / 'csrc'}"]
    subprocess.run(["g++", *flags, *sources, "-o", str(exe)], check=True, capture_output=True, timeout=300)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1", "UBSAN_OPTIONS": "print_stacktrace=1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok: 0 failures" in run.stdout
    assert "runtime error" not in run.stderr
