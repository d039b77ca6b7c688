"""Audio in and out of the Wyoming server: any PCM format in, 16 kHz mono float32 for Whisper; float32 out as PCM."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter

from voiceos.asr import SAMPLE_RATE

WIDTH = 2  # bytes per sample, in and out: 16-bit PCM
MAX_CHANNELS = 64
MIN_RATE, MAX_RATE = 1000, 384_000
OUT_CHUNK_S = 0.1  # each synthesized sentence goes out in chunks of this many seconds


class AudioFormatError(ValueError):
    """A chunk the server cannot convert: the message says which field is wrong."""


class AudioTooLong(ValueError):
    """The request's audio went past its cap."""


class AudioInput:
    """The audio of one transcription request, converted to 16 kHz mono 16-bit as it arrives, up to a cap.

    wyoming's :class:`AudioChunkConverter` resamples (keeping its filter state across chunks) and mixes stereo to
    mono; more channels than two are averaged here first, since audioop only knows mono and stereo.
    """

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._max_bytes = int(max_seconds * SAMPLE_RATE) * WIDTH
        self._format: tuple[int, int, int] | None = None
        self._converter = AudioChunkConverter(rate=SAMPLE_RATE, width=WIDTH, channels=1)
        self._parts: list[bytes] = []
        self._size = 0
        self.received_s = 0.0  # of audio as the client sent it

    def add(self, chunk: AudioChunk) -> None:
        """Convert and keep ``chunk``; raises :class:`AudioFormatError` or :class:`AudioTooLong`."""
        check_format(chunk)
        fmt = (chunk.rate, chunk.width, chunk.channels)
        if fmt != self._format:  # a new format mid-stream: the resampler's state belongs to the old one
            self._format = fmt
            self._converter = AudioChunkConverter(rate=SAMPLE_RATE, width=WIDTH, channels=1)
        if chunk.channels > 2:
            chunk = _downmix(chunk)
        self.received_s += chunk.seconds
        if self._size + int(chunk.seconds * SAMPLE_RATE) * WIDTH > self._max_bytes + WIDTH:
            raise AudioTooLong(f"audio longer than {self.max_seconds:g} s; the request is dropped")
        audio = self._converter.convert(chunk).audio
        self._parts.append(audio)
        self._size += len(audio)

    def samples(self) -> np.ndarray:
        """Everything received, as float32 in [-1, 1) at 16 kHz."""
        pcm = np.frombuffer(b"".join(self._parts), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0


def check_format(chunk: AudioChunk) -> None:
    for name, value, lo, hi in (
        ("rate", chunk.rate, MIN_RATE, MAX_RATE),
        ("width", chunk.width, 1, 4),
        ("channels", chunk.channels, 1, MAX_CHANNELS),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise AudioFormatError(f"audio {name} must be an integer from {lo} to {hi}, got {value!r}"[:200])
    if len(chunk.audio) % (chunk.width * chunk.channels):
        raise AudioFormatError(
            f"audio chunk of {len(chunk.audio)} bytes is not a whole number of frames "
            f"({chunk.channels} channel(s) of {chunk.width} byte(s))"
        )


def _downmix(chunk: AudioChunk) -> AudioChunk:
    """Average any number of channels to one (16-bit); audioop converts the width first."""
    wide = AudioChunkConverter(width=WIDTH).convert(chunk)
    frames = np.frombuffer(wide.audio, dtype="<i2").reshape(-1, chunk.channels)
    mono = frames.mean(axis=1).round().astype("<i2")
    return AudioChunk(rate=chunk.rate, width=WIDTH, channels=1, audio=mono.tobytes(), timestamp=chunk.timestamp)


def pcm_chunks(samples: np.ndarray, rate: int, seconds: float = OUT_CHUNK_S) -> Iterator[bytes]:
    """16-bit mono PCM of float32 ``samples`` in pieces of ``seconds``."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    step = max(1, round(rate * seconds)) * WIDTH
    for start in range(0, len(pcm), step):
        yield pcm[start : start + step]
