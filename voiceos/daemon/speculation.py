"""Speculative ASR: transcribe when the user pauses, keep the transcript if that pause ends the turn.

The VAD reports a pause (:class:`~voiceos.vad.SpeechPaused`) after ``vad.speculate_ms`` of silence, long before the
hangover that ends the turn. Whisper runs on the samples so far right away; if the turn then ends with exactly those
samples, its transcript is the turn's (same input, same output) and most of Whisper's time is already spent.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

import numpy as np

from voiceos.vad import Utterance


class SpeculativeTranscription:
    """At most one transcription started on a pause, claimed by the utterance that ends with the same samples."""

    def __init__(self, executor: concurrent.futures.Executor, transcribe: Callable[[np.ndarray], Any]) -> None:
        self._executor = executor
        self._transcribe = transcribe
        self._pending: tuple[tuple[float, float], concurrent.futures.Future] | None = None

    def start(self, utterance: Utterance) -> concurrent.futures.Future:
        """The user paused: transcribe what they said so far, superseding an earlier speculation."""
        self.drop()
        future = self._executor.submit(self._transcribe, utterance.samples)
        self._pending = ((utterance.start_s, utterance.end_s), future)
        return future

    def peek(self, span: tuple[float, float]) -> concurrent.futures.Future | None:
        """The transcription in progress for the utterance with this span, left in place (None if another)."""
        if self._pending is not None and self._pending[0] == span:
            return self._pending[1]
        return None

    def claim(self, utterance: Utterance) -> concurrent.futures.Future | None:
        """The transcription of exactly this utterance's samples, if one was started; any other is dropped."""
        if self._pending is not None and self._pending[0] == (utterance.start_s, utterance.end_s):
            future, self._pending = self._pending[1], None
            return future
        self.drop()  # cancelling does nothing once it runs: it then just finishes unused
        return None

    def drop(self) -> None:
        """Forget the speculation in progress (cancelled if it has not started yet)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].cancel()
