"""A fast engine first, a second opinion where it is unsure (``asr.fallback_below``).

Moonshine tiny-en transcribes a sentence in tens of milliseconds, and on native read speech it is as accurate as
Whisper; on the non-native recordings of speechocean762 it is less so, and it knows when: the mean log-probability
of its tokens. A transcript below ``asr.fallback_below`` is transcribed again by Whisper, and Whisper's is kept.
Chosen on one half of the shared recordings and checked on the other (benchmarks/README.md, "Moonshine beside
Whisper"): the pair's WER is below either engine's alone, and only the unsure turns pay for Whisper's window.
Partial transcripts (the words while the user speaks) are the first engine's alone.
"""

from __future__ import annotations

import logging

import numpy as np

from voiceos.asr.types import Transcriber, Transcript

log = logging.getLogger(__name__)


class FallbackTranscriber:
    """``first`` transcribes; a non-empty transcript of mean log-probability below ``below`` goes to ``second``."""

    def __init__(self, first: Transcriber, second: Transcriber, below: float) -> None:
        self.first = first
        self.second = second
        self.below = below
        self.engine = first.engine
        self.model_name = first.model_name
        self.word_times = first.word_times
        self.incremental = first.incremental

    @property
    def languages(self) -> list[str]:
        return self.first.languages

    def describe(self) -> str:
        return f"{self.first.describe()}; when unsure (mean log-probability < {self.below:g}): {self.second.describe()}"

    def unsure(self, transcript: Transcript) -> bool:
        return bool(transcript.text) and transcript.confidence is not None and transcript.confidence < self.below

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        first = self.first.transcribe(samples, word_timestamps)
        if not self.unsure(first):
            return first
        second = self.second.transcribe(samples, word_timestamps)
        log.debug(
            "asr: %s was unsure (%.2f): %s transcribed again", self.first.engine, first.confidence, self.second.engine
        )
        elapsed = first.elapsed_ms + second.elapsed_ms
        return Transcript(
            second.text,
            second.language,
            second.duration_s,
            second.words,
            elapsed,
            second.looped,
            second.confidence,
            second_opinion=True,
        )

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        return self.first.transcribe_partial(samples)

    def warm(self) -> None:
        self.first.warm()
        self.second.warm()
