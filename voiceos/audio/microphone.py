"""Live microphone input: a PortAudio InputStream at the device's own rate, delivered to asyncio as 16 kHz frames.

The PortAudio callback only copies the block and hands it to the event loop with ``call_soon_threadsafe``; the
resampling (soxr's streaming resampler) and everything after it run on the loop. The queue between them is bounded:
if the loop falls behind by more than ``max_queued_s`` the oldest audio is dropped and counted, never the callback
blocked.

A stream whose callbacks stop arriving (the sound server died, the device was unplugged) is reported by
:meth:`Microphone.stalled`; the daemon then closes it and reopens with backoff (:func:`rescan_devices` first, since
PortAudio only enumerates devices when it is initialised).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from voiceos.audio.playback import _one_line, _sounddevice
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.errors import AudioDeviceError

log = logging.getLogger(__name__)


def rescan_devices() -> None:
    """Re-initialise PortAudio so that devices (or a sound server) that came or went since start-up are seen.

    Every stream must be closed first: PortAudio invalidates them.
    """
    sd = _sounddevice()
    try:
        sd._terminate()
    except Exception as err:  # already terminated
        log.debug("PortAudio terminate: %s", _one_line(err))
    sd._initialize()


def device_name(index: int | None, kind: str) -> str:
    """A device's name for logs and status (``index`` None = the default device)."""
    sd = _sounddevice()
    try:
        info = sd.query_devices(index, kind=None if index is not None else kind)
        return f"{info['name']} (#{info['index']})"
    except Exception:
        return "default" if index is None else f"#{index}"


# No audio for this long while the stream says it is active: the sound server hangs. 1.5 s was too short on a busy
# 2-core machine: in a 30-minute soak beside a LoRA training, the callback went 1.5 s without a block while the
# daemon's own LM decoded a reply, and the reopen cut that turn. A stream that ends (no longer active) is seen at once.
STALL_S = 3.0


class Microphone:
    """Captures mono audio from one input device; iterate :meth:`frames` on the event loop for 16 kHz float32."""

    def __init__(
        self,
        device: int | None = None,
        *,
        sample_rate: int = 0,
        block_ms: int = 20,
        max_queued_s: float = 5.0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        sd = _sounddevice()
        self.loop = loop or asyncio.get_running_loop()
        self.device = device
        try:
            info = sd.query_devices(device, kind="input") if device is None else sd.query_devices(device)
        except Exception as err:
            raise AudioDeviceError(
                f"no input device {'default' if device is None else device}: {_one_line(err)}"
            ) from None
        self.sample_rate = int(sample_rate or info["default_samplerate"])
        self.name = f"{info['name']} (#{info['index']})"
        self.block = max(1, self.sample_rate * block_ms // 1000)
        self._queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue(
            maxsize=max(2, int(max_queued_s * 1000 / block_ms))
        )
        self.dropped_blocks = 0
        self.overflows = 0
        self.last_block_at = time.monotonic()
        self.samples_in = 0  # at the device rate, since open
        self._closed = False
        import soxr

        self._resampler = (
            soxr.ResampleStream(self.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            if self.sample_rate != SAMPLE_RATE
            else None
        )
        stream = None
        try:
            stream = sd.InputStream(
                samplerate=self.sample_rate,
                channels=1,
                dtype="float32",
                device=device,
                blocksize=self.block,
                latency="low",
                callback=self._callback,
            )
            stream.start()
        except Exception as err:
            if stream is not None:
                stream.close(ignore_errors=True)
            raise AudioDeviceError(
                f"cannot open microphone {self.name} at {self.sample_rate} Hz: {_one_line(err)}"
            ) from None
        self._stream = stream
        log.info("microphone open: %s at %d Hz, %d ms blocks", self.name, self.sample_rate, block_ms)

    # -- the PortAudio thread: copy and hand over, nothing else -----------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        # Stamped here, not when the loop gets the block: a busy event loop must not look like a lost device.
        self.last_block_at = time.monotonic()
        block = indata[:, 0].copy()
        adc = time_info.inputBufferAdcTime or time_info.currentTime  # the stream clock the player's DAC times use
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop is closed, we are shutting down
            self.loop.call_soon_threadsafe(self._deliver, block, adc)

    # -- the event loop --------------------------------------------------------------------------------------------
    def _deliver(self, block: np.ndarray, adc_time: float) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped_blocks += 1
        self._queue.put_nowait((block, adc_time))

    async def frames(self) -> AsyncGenerator[tuple[np.ndarray, float], None]:
        """16 kHz mono float32 chunks with the stream time (ADC clock) of their first sample; ends on close.

        The resampler hands out audio in its own chunking (one output chunk can hold samples of several input
        blocks), so times come from counting samples from an anchor, re-anchored on the block's ADC time when the
        count and the clock disagree by more than 15 ms (dropped blocks, a stream restart).
        """
        anchor: float | None = None  # stream time of input sample 0 (and of output sample 0)
        samples_out = 0
        while not self._closed:
            try:
                block, adc_time = await asyncio.wait_for(self._queue.get(), timeout=0.25)
            except asyncio.TimeoutError:
                continue
            expected = None if anchor is None else anchor + self.samples_in / self.sample_rate
            if expected is None or abs(adc_time - expected) > 0.015:
                anchor = adc_time - self.samples_in / self.sample_rate
                samples_out = round(self.samples_in * SAMPLE_RATE / self.sample_rate)
            assert anchor is not None  # set by the first block
            self.samples_in += len(block)
            out = self._resampler.resample_chunk(block) if self._resampler is not None else block
            if out.size:
                yield np.asarray(out, dtype=np.float32), anchor + samples_out / SAMPLE_RATE
                samples_out += len(out)

    def stalled(self, timeout_s: float = STALL_S) -> bool:
        """True when the stream died or no audio arrived for ``timeout_s``: the device or sound server is gone."""
        if self._closed:
            return True
        return (not self._stream.active) or time.monotonic() - self.last_block_at > timeout_s

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.abort(ignore_errors=True)
            self._stream.close(ignore_errors=True)
        except Exception as err:  # the server is already gone
            log.debug("closing microphone: %s", _one_line(err))
