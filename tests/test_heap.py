"""daemon.heap: the free pages of the C heap go back to the system between turns."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from voiceos.daemon.heap import release_free_memory


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident size from /proc")
def test_memory_freed_on_another_thread_is_returned_to_the_system():
    kept: list[bytearray] = []

    def churn() -> None:  # a turn's worth of buffers on a thread of its own (its own malloc arena), most freed
        buffers = [bytearray(3000) for _ in range(60_000)]  # ~180 MB, each under the mmap threshold
        for buffer in buffers:
            buffer[::512] = b"x" * len(buffer[::512])  # touched: resident
        kept.extend(buffers[::200])  # a few survive, pinning the top of the arena
        buffers.clear()

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    before = _rss_mb()
    release_free_memory()
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert len(kept) == 300
