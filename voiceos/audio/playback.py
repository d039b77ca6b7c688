"""Audio devices and playback through sounddevice (PortAudio).

:class:`ChunkPlayer` is the streaming path the assistant speaks through: replies arrive sentence by sentence, are
queued without blocking the producer, and can be cut at once (barge-in) while :attr:`ChunkPlayer.played_seconds`
says how much of the reply the user actually heard. :func:`play` is the simple blocking path on top of it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType, TracebackType
from typing import Any, Literal

import numpy as np

from voiceos.errors import AudioDeviceError

log = logging.getLogger(__name__)
_CLOSE_WAIT_S = 2.0  # how long close() waits for a write or stop running on another thread

__all__ = ["ChunkPlayer", "have_output_device", "list_devices", "play", "resolve_device"]

Kind = Literal["input", "output"]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _sounddevice() -> ModuleType:
    """Import sounddevice lazily so the package imports (and files/VAD work) on machines without PortAudio."""
    try:
        import sounddevice
    except OSError as err:  # the PortAudio shared library is missing
        raise AudioDeviceError(f"PortAudio is not available ({_one_line(err)}); install libportaudio2") from None
    return sounddevice


def _default_index(sd: ModuleType, kind: Kind) -> int | None:
    try:
        return int(sd.query_devices(kind=kind)["index"])
    except (sd.PortAudioError, ValueError, KeyError, TypeError):
        return None


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device as a plain dict; ``[]`` when there are none (no sound card, no sound server)."""
    try:
        sd = _sounddevice()
        raw = sd.query_devices()
    except AudioDeviceError as err:
        log.warning("%s", err)
        return []
    except Exception as err:  # PortAudioError: PortAudio could not enumerate anything
        log.warning("cannot list audio devices: %s", _one_line(err))
        return []
    default_in, default_out = _default_index(sd, "input"), _default_index(sd, "output")
    return [
        {
            "index": int(dev["index"]),
            "name": str(dev["name"]),
            "max_input_channels": int(dev["max_input_channels"]),
            "max_output_channels": int(dev["max_output_channels"]),
            "default_samplerate": float(dev["default_samplerate"]),
            "is_default_input": int(dev["index"]) == default_in,
            "is_default_output": int(dev["index"]) == default_out,
        }
        for dev in raw
    ]


def _names(devices: list[dict[str, Any]]) -> str:
    return ", ".join(f"{d['index']}: {d['name']}" for d in devices) or "none"


def resolve_device(spec: str | int | None, kind: Kind) -> int | None:
    """Turn a configured device (``auto``, an index, or part of a name) into a PortAudio index (None = default)."""
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    text = "auto" if spec is None else str(spec).strip()
    if text.lower() in ("", "auto"):
        return None
    devices = list_devices()
    if not devices:
        raise AudioDeviceError(f"{kind} device '{text}': no audio devices found (no sound card or sound server)")
    key = f"max_{kind}_channels"
    usable = [d for d in devices if d[key] > 0]
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        match = next((d for d in devices if d["index"] == index), None)
        if match is None:
            raise AudioDeviceError(f"{kind} device {index}: no such device index (available: {_names(usable)})")
        if match[key] <= 0:
            raise AudioDeviceError(
                f"{kind} device {index} ({match['name']}) has no {kind} channels (available: {_names(usable)})"
            )
        return index
    wanted = text.lower()
    exact = [d for d in usable if d["name"].lower() == wanted]
    partial = [d for d in usable if wanted in d["name"].lower()]
    chosen = exact or partial
    if not chosen:
        raise AudioDeviceError(f"{kind} device '{text}': not found (available: {_names(usable)})")
    if len(chosen) > 1:
        log.warning("%s device '%s' matches %s; using %s", kind, text, _names(chosen), chosen[0]["name"])
    return int(chosen[0]["index"])


def have_output_device() -> bool:
    return any(d["max_output_channels"] > 0 for d in list_devices())


def play(samples: np.ndarray, sample_rate: int, device: int | None = None) -> None:
    """Play mono float32 audio and return once it has been heard; PortAudio failures raise AudioDeviceError."""
    samples = np.asarray(samples, dtype=np.float32)
    with ChunkPlayer(sample_rate, device, max_queued_s=max(600.0, samples.size / sample_rate + 1.0)) as player:
        player.write(samples)
        player.close(wait=True)


class ChunkPlayer:
    """Gapless streaming playback of chunks queued by a producer thread.

    ``write`` only appends to a queue; the PortAudio callback copies from it without locks or waits and plays
    silence when the queue is empty (counted in :attr:`underruns` when it happens mid-reply, that is before
    :meth:`finish` or :meth:`drain`). ``stop`` cuts the
    sound at once and drops what is queued; the player can be written to again afterwards. ``close`` (or leaving
    the ``with`` block) stops and releases the device.

    ``max_queued_s`` bounds the queue: a producer that runs that far ahead of the speaker gets an OverflowError.

    ``latency`` defaults to 0.1 s, not PortAudio's "low" (~9 ms): the callback needs the GIL, and with two busy
    Python threads in the process a "low" (or "high", 35 ms) stream underran constantly and stalled, while 0.1 s
    played cleanly. The daemon asks for ``audio.output_latency_ms`` (100 ms). Since the LM decodes in C without
    the GIL, 50 ms plays ~55 ms sooner with few faults, but the models ran ~20 ms slower beside it in
    ``voiceos bench``. Cutting with :meth:`stop` does not wait for that buffer; only the first sound is later.
    """

    def __init__(
        self,
        sample_rate: int,
        device: int | None = None,
        *,
        max_queued_s: float = 600.0,
        latency: str | float = 0.1,
        on_played: Callable[[np.ndarray, float], None] | None = None,
    ) -> None:
        sd = _sounddevice()
        self.sample_rate = int(sample_rate)
        self.device = device
        self._max_queued = int(max_queued_s * self.sample_rate)
        self._queue: deque[np.ndarray] = deque()
        self._current: np.ndarray | None = None
        self._pos = 0
        # Counters since the last stop(): _written by the caller, _consumed and _marks by the callback only.
        self._written = 0
        self._consumed = 0
        self._marks: deque[tuple[float, int, int]] = deque(maxlen=1024)  # (DAC time, consumed before, frames)
        self._played_before = 0  # samples heard before the last stop()
        self._flowing = False
        self._draining = False
        self._ending = False  # finish() was called: the producer has no more audio for now
        self._closed = False
        self.underruns = 0  # the queue ran dry mid-reply (the producer was late)
        self.xruns = 0  # PortAudio reported an output underflow (the callback itself was late)
        self.xruns_in_reply = 0  # of those, the ones while a reply was playing (audible); the rest were silence
        self._on_played = on_played
        self.tap_errors = 0  # exceptions raised by on_played
        self._lock = threading.Lock()
        stream = None
        try:
            stream = sd.OutputStream(
                samplerate=self.sample_rate,
                channels=1,
                dtype="float32",
                device=device,
                latency=latency,
                callback=self._callback,
            )
            stream.start()
        except Exception as err:  # PortAudioError, or ValueError for an unknown device
            if stream is not None:
                stream.close(ignore_errors=True)
            raise AudioDeviceError(
                f"cannot open output device {'default' if device is None else device} "
                f"at {self.sample_rate} Hz: {_one_line(err)}"
            ) from None
        self._stream = stream
        self._latency = float(self._stream.latency)
        log.debug("output stream open: device=%s rate=%d latency=%.3f s", device, self.sample_rate, self._latency)

    # -- the PortAudio thread: keep it short, no locks, no allocation beyond the mark tuple ------------------------

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow:
            self.xruns += 1
            if self._flowing:
                self.xruns_in_reply += 1
        out = outdata[:, 0]
        filled = 0
        chunk, pos = self._current, self._pos
        while filled < frames:
            if chunk is None:
                if not self._queue:
                    break
                chunk, pos = self._queue.popleft(), 0
            n = min(frames - filled, len(chunk) - pos)
            out[filled : filled + n] = chunk[pos : pos + n]
            filled += n
            pos += n
            if pos >= len(chunk):
                chunk = None
        self._current, self._pos = chunk, pos
        if filled < frames:
            out[filled:] = 0.0
            if self._flowing and not self._draining and not self._ending:
                self.underruns += 1
        self._flowing = filled == frames
        dac = time_info.outputBufferDacTime or time_info.currentTime + self._latency
        if filled:
            self._marks.append((dac, self._consumed, filled))
            self._consumed += filled
        if self._on_played is not None:
            try:
                self._on_played(out, dac)
            except Exception:
                self.tap_errors += 1

    # -- the caller's side ----------------------------------------------------------------------------------------

    def write(self, chunk: np.ndarray) -> None:
        """Queue mono audio (float32 in [-1, 1]) behind what is already queued; returns immediately."""
        data = np.asarray(chunk, dtype=np.float32)
        if data.ndim == 2 and data.shape[1] == 1:
            data = data[:, 0]
        if data.ndim != 1:
            raise ValueError(f"ChunkPlayer plays mono audio (a 1-D array), got shape {data.shape}")
        if not data.size:
            return
        data = np.clip(data, -1.0, 1.0)  # a copy: the caller may reuse its buffer
        with self._lock:
            if self._closed:
                raise RuntimeError("ChunkPlayer is closed")
            queued = self._written - self._consumed
            if queued + data.size > self._max_queued:
                raise OverflowError(
                    f"playback queue would hold {(queued + data.size) / self.sample_rate:.1f} s, "
                    f"over its {self._max_queued / self.sample_rate:.0f} s limit"
                )
            self._written += data.size  # before the append, so the callback never consumes more than written
            self._ending = False
            self._queue.append(data)
            restart = not self._stream.active
        if restart:  # outside the lock: a sound server that dies here can hang PortAudio, and close() needs the lock
            self._restart()

    def finish(self) -> None:
        """The producer has written its last chunk for now: the queue running dry next is the end of the reply,
        not an underrun. The next :meth:`write` counts gaps again."""
        self._ending = True

    @property
    def latency(self) -> float:
        """The output latency PortAudio granted: how long written audio takes to be heard, at least."""
        return self._latency

    @property
    def queued_seconds(self) -> float:
        """Audio written but not yet handed to the device."""
        return max(0, self._written - self._consumed) / self.sample_rate

    @property
    def played_seconds(self) -> float:
        """Audio that has actually reached the device's output so far (cut audio is not counted)."""
        if self._closed:
            return self._played_before / self.sample_rate
        return (self._played_before + self._played_now()) / self.sample_rate

    def _played_now(self) -> int:
        marks = tuple(self._marks)  # one C-level copy: safe while the callback appends
        if not marks:
            return 0
        try:
            now = self._stream.time
        except Exception:
            return marks[-1][1] + marks[-1][2]
        for dac, before, frames in reversed(marks):
            if now >= dac:
                return before + min(frames, int((now - dac) * self.sample_rate))
        return marks[0][1]

    def drain(self, timeout: float | None = None) -> None:
        """Block until everything written has been played. Default timeout: the queued audio plus 5 s."""
        if self._closed:
            return
        limit = timeout if timeout is not None else self.queued_seconds + self._latency + 5.0
        deadline = time.monotonic() + limit
        self._draining = True
        try:
            while True:
                consumed = self._consumed
                if consumed >= self._written and self._played_now() >= consumed:
                    return
                if not self._stream.active:
                    raise AudioDeviceError("audio output stopped while playing (device lost?)")
                if time.monotonic() > deadline:
                    raise AudioDeviceError(
                        f"audio output stalled: {self.queued_seconds:.1f} s still queued after {limit:.1f} s"
                    )
                time.sleep(0.005)
        finally:
            self._draining = False

    def stop(self) -> None:
        """Cut playback now: drop queued audio and what the device has buffered. Later writes play again."""
        with self._lock:
            if self._closed:
                return
            self._stop_locked()

    def _stop_locked(self) -> None:
        heard = self._played_now()
        try:
            self._stream.abort()  # discards buffers not yet played; the callback no longer runs after this
        except Exception as err:
            log.warning("aborting the output stream failed: %s", _one_line(err))
        self._queue.clear()
        self._current, self._pos = None, 0
        self._played_before += heard
        self._written = self._consumed = 0
        self._marks.clear()
        self._flowing = False

    def _restart(self) -> None:
        try:
            self._stream.start()
        except Exception as err:
            raise AudioDeviceError(f"cannot restart audio output: {_one_line(err)}") from None

    def close(self, wait: bool = False) -> None:
        """Release the device; idempotent. By default this cuts like :meth:`stop`.

        ``wait=True`` plays everything queued to the end first: it drains, then stops the stream gracefully, so
        the sound server's own buffer (which PortAudio's timing does not see) is heard too rather than flushed.
        """
        if wait and not self._closed:
            self.drain()
            with self._lock:
                if not self._closed and self._stream.active:
                    try:
                        self._stream.stop()  # unlike abort(), waits until the device has played its buffers
                    except Exception as err:
                        log.warning("stopping the output stream failed: %s", _one_line(err))
                    self._marks.clear()
                    self._played_before += self._consumed  # drained: all of it was heard
                    self._written = self._consumed = 0
        if not self._lock.acquire(timeout=_CLOSE_WAIT_S):
            # Another thread is stuck in a PortAudio call on this stream (the sound server died under it): leave
            # the stream to it rather than wait for ever, so the devices can be reopened.
            log.warning("the output stream is busy in another call; leaving it unclosed")
            self._closed = True
            return
        try:
            if self._closed:
                return
            self._stop_locked()
            self._closed = True
            try:
                self._stream.close()
            except Exception as err:
                log.warning("closing the output stream failed: %s", _one_line(err))
        finally:
            self._lock.release()

    def __enter__(self) -> ChunkPlayer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
