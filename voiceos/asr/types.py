"""The ASR stage's shared types: what a transcriber returns and the protocol every engine satisfies (apart from the
engines and their loader in :mod:`voiceos.asr`, which the engines would otherwise import back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

ENGINES = ("whisper", "moonshine")


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    words: tuple[Word, ...] = field(default_factory=tuple)
    elapsed_ms: float = 0.0
    looped: bool = False  # the decode looped (voiceos.asr.loops): Whisper decoded again, Moonshine's repeats cut
    confidence: float | None = None  # the mean log-probability of its tokens (None: not known)
    second_opinion: bool = False  # transcribed again by the fallback engine (asr.fallback_below)


@runtime_checkable
class Transcriber(Protocol):
    """What the pipeline, the daemon and the Wyoming server need from a speech recognizer."""

    engine: str  # "whisper" or "moonshine"
    model_name: str  # the model as configured (asr.model), for status lines and Wyoming's info
    word_times: bool  # whether transcribe(..., word_timestamps=True) gives words with times
    incremental: (
        bool  # a call costs what the audio's length does: a growing utterance may be transcribed again and again
    )

    @property
    def languages(self) -> list[str]:
        """The languages it transcribes (``["en"]`` for the English-only models)."""
        ...

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio; silence gives an empty text. Blocking; one call at a time."""
        ...

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        """The words so far of an utterance still being spoken: the engine's quickest pass (no second opinion). A
        later :meth:`transcribe` of the very same samples starts from it."""
        ...

    def warm(self) -> None:
        """Pay lazy initialisation at start-up, not on the first utterance."""
        ...

    def describe(self) -> str:
        """One line for logs, ``doctor`` and ``status``: the engine, its model and where it runs."""
        ...
