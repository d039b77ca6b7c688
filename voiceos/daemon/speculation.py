"""Words while the user speaks: transcribe the utterance as it grows, and at each pause, so that its transcript is
there when the turn ends.

- While the user talks (:class:`~voiceos.vad.SpeechGrowing`, every ``asr.partial_ms``), the utterance so far is
  transcribed when the model thread is free, one at a time (a later one waits for no earlier one: it is skipped while
  one runs). Its words go out as ``partial_transcript`` events. This is for engines whose cost grows with the audio
  (Moonshine: tens of milliseconds for a sentence); with Whisper's 30 s window each would cost ~300 ms, so there are
  none.
- At a pause (:class:`~voiceos.vad.SpeechPaused`, ``vad.speculate_ms`` of silence) the utterance up to the pause is
  transcribed at once (a partial of exactly those samples, when the user paused right after it, is not decoded
  again: the engine keeps it). If the turn then ends with exactly those samples, that transcript is the turn's (same
  input, same output); the held reply, the end-of-turn word check and the turn all use it.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from voiceos.vad import Utterance

log = logging.getLogger(__name__)

Span = tuple[float, float]


def span_of(utterance: Utterance) -> Span:
    return (utterance.start_s, utterance.end_s)


class SpeculativeTranscription:
    """The pause's transcription (at most one, claimed by the utterance that ends with the same samples) and the
    partial transcription of the utterance growing."""

    def __init__(
        self,
        executor: concurrent.futures.Executor,
        transcribe: Callable[[np.ndarray], Any],
        on_partial: Callable[[Utterance, Any], None] | None = None,
        transcribe_partial: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self._executor = executor
        self._transcribe = transcribe
        self._transcribe_partial = transcribe_partial or transcribe  # the words so far: the quickest pass
        self._on_partial = on_partial  # (from the model thread) a partial transcript is ready
        self._pending: tuple[Span, concurrent.futures.Future] | None = None
        self._partial: tuple[Span, concurrent.futures.Future] | None = None  # the latest partial, maybe running
        self.partials = 0  # partial transcriptions started

    def grow(self, utterance: Utterance) -> concurrent.futures.Future | None:
        """The user is still talking: transcribe what they said so far, unless a partial is still running (then
        this one is skipped: the next growth or the pause brings a newer one)."""
        if self._partial is not None and not self._partial[1].done():
            return None
        future = self._executor.submit(self._transcribe_partial, utterance.samples)
        self._partial = (span_of(utterance), future)
        self.partials += 1
        if self._on_partial is not None:
            future.add_done_callback(lambda done: self._partial_done(utterance, done))
        return future

    def _partial_done(self, utterance: Utterance, done: concurrent.futures.Future) -> None:
        if done.cancelled() or done.exception() is not None or self._partial is None or self._partial[1] is not done:
            return  # (the utterance ended meanwhile: no news)
        assert self._on_partial is not None
        self._on_partial(utterance, done.result())

    def start(self, utterance: Utterance) -> concurrent.futures.Future:
        """The user paused: transcribe what they said so far, superseding an earlier speculation."""
        self.drop()
        future = self._executor.submit(self._transcribe, utterance.samples)
        self._pending = (span_of(utterance), future)
        return future

    def peek(self, span: Span) -> concurrent.futures.Future | None:
        """The transcription in progress for the utterance with this span, left in place (None if another)."""
        if self._pending is not None and self._pending[0] == span:
            return self._pending[1]
        return None

    def claim(self, utterance: Utterance) -> concurrent.futures.Future | None:
        """The transcription of exactly this utterance's samples, if one was started; any other is dropped."""
        if self._pending is not None and self._pending[0] == span_of(utterance):
            future, self._pending = self._pending[1], None
            self._partial = None
            return future
        self.drop()  # cancelling does nothing once it runs: it then just finishes unused
        return None

    def drop(self) -> None:
        """Forget the speculation in progress (cancelled if it has not started yet)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending[1].cancel()

    def end_utterance(self) -> None:
        """The utterance ended or was discarded: its partial is of no more use (cancelled if not started)."""
        partial, self._partial = self._partial, None
        if partial is not None:
            partial[1].cancel()
