"""Give the C heap's free pages back to the system after each turn.

A turn allocates and frees tens of megabytes on several threads (the model thread, ONNX Runtime's and llama.cpp's
workers, the device thread): glibc keeps what was freed in per-thread arenas, so the daemon's resident memory creeps up
turn after turn although nothing is kept (the 10-minute soak saw ~4 MB a turn over its first 40 turns). ``malloc_trim``
returns the free pages; it costs a few milliseconds, on the model thread between turns. Elsewhere than glibc it is a
no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; True if any were (False also where glibc is absent)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
