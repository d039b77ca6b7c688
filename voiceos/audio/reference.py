"""What the speaker played, by stream time: the echo stage's reference (see :mod:`voiceos.audio.echo`).

``ChunkPlayer(..., on_played=reference.write)`` feeds it from the PortAudio callback, which only copies the block
into a preallocated ring (no lock, no allocation); resampling to 16 kHz happens on the reader's side, in
:meth:`PlaybackReference.read`, so the callback stays cheap. Times are *stream time*: the clock PortAudio uses for
``outputBufferDacTime`` and ``inputBufferAdcTime`` (one clock for every stream of a process).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import soxr

from voiceos.audio.rate import SAMPLE_RATE

__all__ = ["SAMPLE_RATE", "PlaybackReference"]


class PlaybackReference:
    """What the speaker played, at 16 kHz, by stream time: one writer (the audio callback), any readers.

    The writer side (:meth:`write`) copies each block into a ring at the player's rate and then publishes its
    DAC time with one counter increment, so a reader never sees half a block. Readers resample what is new in
    :meth:`read` (soxr, in streaming mode) into a second ring where each sample's slot is its time times 16000; a
    slot remembers which time it holds, so gaps (a stopped stream) and overwritten history read as silence.
    Consecutive blocks are joined as one continuous stream while their DAC times agree within 15 ms; beyond
    that (a restart, clock drift) the stream is re-anchored on the block's own timestamp.
    """

    _REANCHOR_S = 0.015

    def __init__(self, source_rate: int, capacity_s: float = 8.0) -> None:
        if source_rate <= 0:
            raise ValueError(f"source_rate must be positive, got {source_rate}")
        self.source_rate = int(source_rate)
        self.rate = SAMPLE_RATE
        # Writer side: raw samples and block marks (DAC time, first raw index, length), published by _marks_written.
        # Twice the capacity: a reader takes only blocks the writer cannot be overwriting while it copies them.
        self._raw = np.zeros(int(2 * capacity_s * self.source_rate), np.float32)
        self._marks = 4096
        self._mark_time = np.zeros(self._marks, np.float64)
        self._mark_pos = np.zeros(self._marks, np.int64)
        self._mark_len = np.zeros(self._marks, np.int64)
        self._raw_written = 0
        self._marks_written = 0
        # Reader side.
        self._lock = threading.Lock()
        self._marks_read = 0
        self._ring = np.zeros(int(capacity_s * SAMPLE_RATE), np.float32)
        self._stamp = np.full(len(self._ring), -1, np.int64)  # the absolute slot each ring cell holds
        self._stream: soxr.ResampleStream | None = None
        self._seg_slot = 0  # slot of the current segment's first sample
        self._seg_in = 0  # source samples fed into the current segment
        self._seg_out = 0  # 16 kHz samples placed from it
        self._high_slot = -1  # one past the latest slot written
        self._breaks: deque[float] = deque(maxlen=64)  # times where playback did not go on as timed before

    # -- writer (PortAudio callback): no locks, no allocation ----------------------------------------------------

    def write(self, samples: np.ndarray, dac_time: float) -> None:
        """Record a block the speaker will play from ``dac_time`` on (mono, at ``source_rate``)."""
        n = len(samples)
        cap = len(self._raw)
        if n > cap:
            samples, dac_time, n = samples[n - cap :], dac_time + (n - cap) / self.source_rate, cap
        start = self._raw_written
        pos = start % cap
        first = min(n, cap - pos)
        self._raw[pos : pos + first] = samples[:first]
        if n > first:
            self._raw[: n - first] = samples[first:]
        i = self._marks_written % self._marks
        self._mark_time[i] = dac_time
        self._mark_pos[i] = start
        self._mark_len[i] = n
        self._raw_written = start + n
        self._marks_written += 1  # publishes the block

    # -- readers -------------------------------------------------------------------------------------------------

    def read(self, start_time: float, n: int) -> np.ndarray:
        """The ``n`` samples (16 kHz) played from ``start_time`` on; silence where nothing was played."""
        with self._lock:
            self._pump()
            slots = np.arange(n, dtype=np.int64) + round(start_time * SAMPLE_RATE)
            cells = slots % len(self._ring)
            return np.where(self._stamp[cells] == slots, self._ring[cells], np.float32(0.0))

    def broken(self, start_time: float, end_time: float) -> bool:
        """Whether the played stream broke (underrun, restart, cut) between the two times."""
        with self._lock:
            self._pump()
            return any(start_time <= t <= end_time for t in self._breaks)

    def cut(self, at_time: float) -> None:
        """Forget what was to be played from ``at_time`` on (``ChunkPlayer.stop`` dropped it unheard)."""
        with self._lock:
            self._pump()
            first = round(at_time * SAMPLE_RATE)
            if first < self._high_slot:
                slots = np.arange(max(first, self._high_slot - len(self._ring)), self._high_slot, dtype=np.int64)
                self._stamp[slots % len(self._ring)] = -1
            self._stream = None  # the next block starts a new segment
            self._breaks.append(at_time)

    def _pump(self) -> None:
        """Resample the blocks published since the last call into the 16 kHz ring (reader lock held)."""
        written = self._marks_written
        if written - self._marks_read > self._marks:
            self._marks_read, self._stream = written - self._marks, None
        while self._marks_read < written:
            i = self._marks_read % self._marks
            dac, pos, n = float(self._mark_time[i]), int(self._mark_pos[i]), int(self._mark_len[i])
            self._marks_read += 1
            cap = len(self._raw)
            block = self._raw[np.arange(pos, pos + n) % cap]
            if self._raw_written - pos > cap // 2:  # the writer is (or was, during the copy) lapping us
                self._stream = None
                continue
            self._feed(block, dac)

    def _feed(self, block: np.ndarray, dac: float) -> None:
        slot = dac * SAMPLE_RATE
        if self._stream is not None:
            expected = self._seg_slot + self._seg_in * SAMPLE_RATE / self.source_rate
            if abs(slot - expected) > self._REANCHOR_S * SAMPLE_RATE:
                self._place(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
                self._stream = None
        if self._stream is None:
            if self._high_slot >= 0:
                self._breaks.append(dac)
            self._stream = soxr.ResampleStream(self.source_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            self._seg_slot, self._seg_in, self._seg_out = round(slot), 0, 0
        self._seg_in += len(block)
        self._place(self._stream.resample_chunk(block))

    def _place(self, out: np.ndarray) -> None:
        if not len(out):
            return
        out = out[-len(self._ring) :]
        slots = np.arange(len(out), dtype=np.int64) + self._seg_slot + self._seg_out
        self._seg_out += len(out)
        cells = slots % len(self._ring)
        self._ring[cells] = out
        self._stamp[cells] = slots
        self._high_slot = max(self._high_slot, int(slots[-1]) + 1)
