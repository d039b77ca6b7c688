"""Text in, speech out, for every kind of reply (the LM's streamed words, a skill's sentence, an alarm's notice):
the sentence chunker, the voice with the reply's emotion, the audio sink, the sentences' spans and the timings.

Each finished sentence is synthesized and handed to ``on_audio`` while the text of the next one is still being
written. In the sequential baseline (``runtime.sequential``, what ``voiceos bench`` compares against) sentences are
kept until the whole reply is written, then synthesized, then handed over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from voiceos.config import Config
from voiceos.text.chunker import SentenceChunker
from voiceos.tts import TtsEngine

AudioSink = Callable[[np.ndarray], None]


@dataclass(frozen=True)
class SentenceSpan:
    """One synthesized sentence and where its audio lies in the turn's audio (samples, end exclusive)."""

    text: str
    start: int
    end: int


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class ReplySpeaker:
    """Speaks one reply. ``on_first_audio`` runs once, right after the first chunk was handed to ``on_audio``."""

    def __init__(
        self,
        tts: TtsEngine | None,
        config: Config,
        *,
        start: float,
        timings: dict[str, float],
        on_audio: AudioSink | None = None,
        cancel: threading.Event | None = None,
        on_first_audio: Callable[[], None] | None = None,
        on_sentence: Callable[[str], None] | None = None,
    ) -> None:
        first_clause = config.tts.first_clause_chars
        self.chunker = SentenceChunker(first_clause=first_clause > 0, clause_min_chars=first_clause or 40)
        self.tts = tts
        self.sequential = config.runtime.sequential
        self.start, self.timings = start, timings
        self.on_audio, self.cancel = on_audio, cancel
        self.on_first_audio = on_first_audio
        self.on_sentence = on_sentence  # each sentence as it is said (what a text client shows)
        self.emotion = "neutral"  # the voice's emotion table for this reply
        self.spans: list[SentenceSpan] = []
        self._parts: list[np.ndarray] = []
        self._produced = 0
        self._kept: list[str] = []  # sequential: sentences waiting for the end of the reply

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @property
    def sentences(self) -> list[str]:
        return [span.text for span in self.spans]

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate if self.tts is not None else 0

    @property
    def has_kept(self) -> bool:
        return bool(self._kept)

    def audio(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=np.float32)

    def say(self, sentence: str) -> None:
        """A whole sentence of the reply: spoken now (or, sequential, once the reply is written)."""
        if self.sequential:
            self._kept.append(sentence)
        else:
            self._speak(sentence)

    def play(self, samples: np.ndarray, text: str = "") -> None:
        """Ready-made audio at the voice's rate (an alarm's chime), as a span of its own."""
        first = self._produced
        self._hand_over(samples)
        self.spans.append(SentenceSpan(text, first, self._produced))

    def finish(self) -> None:
        """The reply is written: the sequential baseline now synthesizes and hands over everything it kept."""
        if not self.sequential:
            return
        kept, self._kept = self._kept, []
        self.sequential = False  # (from here on, sentences go out as they are made)
        held, self.on_audio = self.on_audio, None
        for sentence in kept:
            self._speak(sentence)
        self.on_audio = held
        if held is not None and not self.cancelled:
            for chunk in self._parts:
                held(chunk)
            self._first_audio_out()

    def _speak(self, sentence: str) -> None:
        first = self._produced
        self.timings.setdefault("first_sentence", ms_since(self.start))
        if self.on_sentence is not None and not self.cancelled:
            self.on_sentence(sentence)
        if self.tts is None:  # a text reply (voiceos chat): the sentences without their audio
            self.spans.append(SentenceSpan(sentence, first, first))
            return
        for chunk in self.tts.synthesize(sentence, emotion=self.emotion):
            if self.cancelled:
                break
            self.timings.setdefault("tts_first_audio", ms_since(self.start))
            self._hand_over(chunk)
        self.spans.append(SentenceSpan(sentence, first, self._produced))

    def _hand_over(self, chunk: np.ndarray) -> None:
        self._parts.append(chunk)
        self._produced += len(chunk)
        if self.on_audio is not None and not self.sequential:
            self.on_audio(chunk)
            self._first_audio_out()

    def _first_audio_out(self) -> None:
        callback, self.on_first_audio = self.on_first_audio, None
        if callback is not None:
            callback()
