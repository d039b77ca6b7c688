"""A turn in progress, and the reply's head start.

A turn is cancelled through a ``threading.Event`` the model thread checks between tokens and audio chunks.

Head start (``vad.speculate_reply``): when the user pauses (``vad.speculate_ms`` of silence), the daemon transcribes
what they said so far and starts answering it at once, in a *held* turn, while the VAD still waits for the hangover
that ends the turn. A held turn computes (LM prefill, first clause, its speech) but plays nothing, publishes nothing
and changes no state: its events wait in :attr:`Turn.held_events`, its first audio chunk waits in the model thread.
If the turn ends at that pause (the VAD's utterance has exactly the same samples, so Whisper's transcript and
everything after it are the same) the turn is committed: the events go out in order and the audio plays, earlier
by however much of the work the hangover covered. If the user goes on talking instead, the held turn is cancelled
unheard and leaves no trace (no history, no carry-over: its words are part of the utterance that continues).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HELD_POLL_S = 0.01  # how often a held model thread looks at its turn's cancel flag
# the pipeline's timings counted from the reply's start: with a head start, from the commit instead
REPLY_TIMINGS = ("emotion", "lm_first_token", "first_sentence", "tts_first_audio", "lm_total", "total")


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class Turn:
    """A turn in progress: what cancels it, what it has played, and (held) what waits for its commit."""

    user_text: str
    source: str
    cancel: threading.Event = field(default_factory=threading.Event)
    played_at_start: float = 0.0  # the player's played_seconds when this turn's audio began
    speaking: bool = False  # set on the event loop by TurnController.speaking_started, never by the model thread
    interrupted: bool = False
    interrupted_by: str | None = None  # why: barge-in, a new turn, the interrupt command, ...
    timings_ms: dict[str, float] = field(default_factory=dict)
    done: asyncio.Future | None = None
    committed: threading.Event = field(default_factory=_set_event)  # clear while held (a head start)
    held_events: list[Any] = field(default_factory=list)
    head_start: bool = False
    committed_at: float = 0.0  # perf_counter() at the commit of a head start
    reply_started_at: float = 0.0  # perf_counter() when the model thread began the reply
    asr_done_at: float = 0.0  # perf_counter() when the transcript was there
    created_at: float = 0.0  # time.monotonic() when a held turn began
    max_hold_s: float = 0.0  # a held turn not decided by then cancels itself (a safety net: the VAD decides)
    words: asyncio.Future | None = None  # a microphone turn's transcript once known ("": none; None: unknown)
    cut_by: Turn | None = None  # the microphone turn whose utterance cut this say/listen turn before it spoke
    task: asyncio.Task | None = None  # the daemon's task running the turn
    ended: bool = False  # set once the turn is over (answered, cut or failed): see TurnController.ended
    notice: bool = False  # its text is said as it is (an alarm's notice, "Yes?"), not answered
    speech_started_at: float | None = None  # the assistant's clock when the user began its utterance
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def held(cls, source: str, done: asyncio.Future | None = None, *, max_hold_s: float) -> Turn:
        turn = cls("", source, done=done, head_start=True, max_hold_s=max_hold_s)
        turn.committed.clear()
        turn.created_at = time.monotonic()
        return turn

    @property
    def is_held(self) -> bool:
        return not self.committed.is_set()

    def publish(self, event: Any, publish: Callable[[Any], None]) -> None:
        """``publish(event)`` now, or at the commit while the turn is held (from any thread)."""
        with self._lock:
            if not self.committed.is_set():
                self.held_events.append(event)
                return
        publish(event)

    def commit(self, publish: Callable[[Any], None]) -> None:
        """The turn did end at the pause: publish what it held, in order, and let its audio play."""
        with self._lock:
            events, self.held_events = self.held_events, []
            self.committed_at = time.perf_counter()
            self.committed.set()
        for event in events:
            publish(event)

    def wait_until_decided(self) -> bool:
        """In the model thread: block while held; True once committed, False once cancelled."""
        while not self.committed.wait(HELD_POLL_S):
            if self.cancel.is_set():
                return False
            if time.monotonic() - self.created_at > self.max_hold_s:
                self.cancel.set()
                return False
        return not self.cancel.is_set()

    def head_start_timings(self, timings: dict[str, float]) -> dict[str, float]:
        """A committed head start's timings as if counted from the end of the turn: work done before it is 0, and
        ``head_start`` says how much the reply had run by then (``asr``: what was left of the ASR after it;
        ``asr_ready``: when the transcript was there, negative when before the end of the turn)."""
        if not self.head_start or not self.committed_at:
            return timings
        ahead = max(0.0, (self.committed_at - self.reply_started_at) * 1000) if self.reply_started_at else 0.0
        shifted = dict(timings)
        for key in REPLY_TIMINGS:
            if key in shifted:
                shifted[key] = max(0.0, shifted[key] - ahead)
        if self.asr_done_at:
            shifted["asr_ready"] = (self.asr_done_at - self.committed_at) * 1000
            shifted["asr"] = max(0.0, shifted["asr_ready"])
        shifted["head_start"] = ahead
        return shifted
