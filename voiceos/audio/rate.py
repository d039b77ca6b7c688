"""The one rate of speech inside voiceos: the microphone is resampled to it, and the VAD, ASR, the turn model, the
echo canceller and the recordings the tests and benchmarks speak all read it."""

from __future__ import annotations

SAMPLE_RATE = 16_000  # Hz, mono float32
