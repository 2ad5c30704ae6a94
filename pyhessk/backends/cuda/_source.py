"""Where the CUDA kernel sources live, and the single source string NVRTC compiles.

The kernels are the headers of ``csrc/cuda/kernels`` (with ``csrc/common``). A source checkout (and an
editable install) has them under ``csrc/``; an installed wheel carries them as package data under
``pyhessk/include/``. NVRTC gets one self-contained string with the project's own quoted includes inlined
(each once, as ``#pragma once`` would), so that CuPy's kernel cache, keyed by the source text, is never
stale after an upgrade.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\s*$", re.MULTILINE)


def source_root() -> Path:
    """The directory holding ``common/`` and ``cuda/kernels/``; ``FileNotFoundError`` if none is found.

    ``PYHESSK_CUDA_SOURCE`` overrides the search (a directory laid out like ``csrc/``).
    """
    package = Path(__file__).resolve().parents[2]  # .../pyhessk
    candidates = [Path(os.environ["PYHESSK_CUDA_SOURCE"])] if os.environ.get("PYHESSK_CUDA_SOURCE") else []
    candidates += [package / "include", package.parent / "csrc"]
    for root in candidates:
        if (root / "cuda" / "kernels" / "all.cuh").is_file() and (root / "common" / "config.h").is_file():
            return root
    raise FileNotFoundError(
        "the CUDA kernel headers were not found (looked in " + ", ".join(str(c) for c in candidates) + "); "
        "reinstall pyhessk with its headers, or point PYHESSK_CUDA_SOURCE at a csrc/ directory"
    )


def _inline(path: Path, seen: set[Path]) -> str:
    path = path.resolve()
    if path in seen:
        return ""
    seen.add(path)
    text = _PRAGMA_ONCE.sub("", path.read_text(encoding="utf-8"))

    def repl(match: re.Match[str]) -> str:
        target = (path.parent / match.group(1)).resolve()
        if not target.is_file():
            raise FileNotFoundError(f"{path}: included file {match.group(1)!r} not found")
        return f"// begin {target.name}\n{_inline(target, seen)}// end {target.name}\n"

    return _INCLUDE.sub(repl, text)


@functools.cache
def kernel_source(root: str | None = None) -> str:
    """All kernels as one NVRTC-ready string (no project includes left; NVRTC's built-ins suffice)."""
    base = Path(root) if root is not None else source_root()
    return _inline(base / "cuda" / "kernels" / "all.cuh", set())


NVRTC_OPTIONS: tuple[str, ...] = ("-std=c++17", "-diag-suppress=177")  # no fast math: curvature users need IEEE exp/tanh
