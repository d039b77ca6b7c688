"""What this CPU and system offer the LM's block kernel, found without importing torch (``voiceos/__init__.py``
needs it before torch loads)."""

from __future__ import annotations

import functools
import os
import platform
import shutil
from pathlib import Path


@functools.cache  # read at `import voiceos` and again when the kernel is built: the CPU does not change
def cpu_flags() -> frozenset[str]:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return frozenset()
    return frozenset(next((line for line in lines if line.startswith("flags")), "").partition(":")[2].split())


def cpu_supported() -> bool:
    """x86-64 with AVX2, FMA and F16C (what the kernel's intrinsics need at least)."""
    return platform.machine().lower() in ("x86_64", "amd64") and {"avx2", "fma", "f16c"} <= cpu_flags()


def c_compiler() -> str | None:
    """``$CC``, else ``cc`` or ``gcc`` on the PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def block_kernel_possible() -> bool:
    return cpu_supported() and c_compiler() is not None
