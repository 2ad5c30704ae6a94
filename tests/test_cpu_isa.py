"""C++ engine code on both instruction sets it is compiled for.

The engine's functions are cloned for x86-64-v3 and for the baseline and the loader runs only the clone this
CPU supports, so the other clone is never exercised through Python here. Each driver is built once per
instruction set without cloning:

- csrc/tests/sweeps_driver.cpp: the register-tiled transpose (csrc/cpu/sweeps.h) on every small shape,
  against a plain loop;
- csrc/tests/tanh_driver.cpp: the float tanh (csrc/common/math.h) on every float in [2^-30, 20], against
  libm in double, and the double tanh on dense grids, against libm in long double (FMA contraction on
  x86-64-v3 rounds differently from the baseline).
"""

import pathlib
import platform
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DRIVERS = ["sweeps_driver.cpp", "tanh_driver.cpp"]


def _cpu_flags() -> set[str]:
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to build the driver")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the clones are x86-64 only")
@pytest.mark.parametrize("arch", ["x86-64", "x86-64-v3"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_driver_on_each_instruction_set(tmp_path, driver, arch):
    source = ROOT / "csrc" / "tests" / driver
    if not source.exists():
        pytest.skip("the C++ sources are not beside the tests (installed package run)")
    if arch == "x86-64-v3" and not {"avx2", "fma", "bmi2"} <= _cpu_flags():
        pytest.skip("this CPU cannot run x86-64-v3 code")
    exe = tmp_path / "driver"
    flags = ["-std=c++17", "-O3", "-fno-trapping-math", "-fno-math-errno", f"-march={arch}", "-DPYHESSK_CPU_NO_CLONES",
             f"-I{ROOT / 'csrc'}"]
    subprocess.run(["g++", *flags, str(source), "-o", str(exe)], check=True, capture_output=True, timeout=300)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok: 0 failures" in run.stdout, run.stdout
