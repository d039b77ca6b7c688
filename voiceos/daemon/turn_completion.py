"""The daemon's side of the end-of-turn strategy: a :class:`voiceos.vad.TurnCheck` is answered off the event loop,
and a "complete" verdict (its pause's transcript not stopping mid-phrase) ends the utterance in the endpointer if
the user is still silent (voiceos.turn)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

from voiceos.events import TurnVerdictEvent
from voiceos.model_thread import ModelThread
from voiceos.turn import EndOfTurn, TurnVerdict
from voiceos.vad import TurnCheck, VadEvent

log = logging.getLogger(__name__)

EndTurn = Callable[[tuple[float, float]], list[VadEvent]]
OnEvents = Callable[[list[VadEvent]], None]


class TurnCompletion:
    """Asks ``strategy`` on a thread of its own (the models' thread is busy with the speculative transcript), one
    pause at a time: a newer pause makes an older verdict moot. Nothing is cancelled from here: the transcript
    belongs to the speculation and the held reply that wait on it too."""

    def __init__(self, strategy: EndOfTurn, publish: Callable[[TurnVerdictEvent], None]) -> None:
        self.strategy = strategy
        self._publish = publish
        self._executor = ModelThread("turn")
        self._pending: asyncio.Future | None = None

    def check(
        self,
        event: TurnCheck,
        words: concurrent.futures.Future | None,
        end_turn: EndTurn,
        on_events: OnEvents,
    ) -> None:
        """Ask about the pause ``event`` announced; on "complete" (and ``words``, the pause's transcript, not
        overruling it), ``end_turn(span)`` and hand its events to ``on_events``."""
        loop = asyncio.get_running_loop()  # (an older pause's verdict or transcript is left to finish, unused)
        future = loop.run_in_executor(self._executor, self.strategy.verdict, event.audio)
        self._pending = future

        def decided(done: asyncio.Future) -> None:
            if done.cancelled() or self._pending is not done:
                return
            self._pending = None
            error = done.exception()
            if error is not None:  # a model that fails leaves the turn to the silence timer
                log.warning("end of turn: the turn model failed (%s); the silence timer decides", error)
                return
            verdict: TurnVerdict = done.result()
            if not verdict.complete or words is None or not self.strategy.uses_words:
                self._conclude(event, verdict, "", end_turn, on_events)
                return
            transcript = asyncio.wrap_future(words)
            self._pending = transcript
            transcript.add_done_callback(lambda heard: self._heard(heard, event, verdict, end_turn, on_events))

        future.add_done_callback(decided)

    def _heard(
        self, heard: asyncio.Future, event: TurnCheck, verdict: TurnVerdict, end_turn: EndTurn, on_events: OnEvents
    ) -> None:
        if heard.cancelled() or self._pending is not heard:
            return  # the user went on: a newer pause is being decided
        self._pending = None
        text = "" if heard.exception() is not None else getattr(heard.result(), "text", "")
        self._conclude(event, verdict, text, end_turn, on_events)

    def _conclude(
        self, event: TurnCheck, verdict: TurnVerdict, text: str, end_turn: EndTurn, on_events: OnEvents
    ) -> None:
        overruled = verdict.complete and self.strategy.unfinished(text)
        events = end_turn(event.span) if verdict.complete and not overruled else []
        if overruled:
            why = ", but its words stop mid-phrase"
        elif verdict.complete and not events:
            why = ", but the user went on"
        else:
            why = ""
        log.info(
            "end of turn: %s (p=%.2f, %.0f ms)%s",
            "complete" if verdict.complete else "incomplete",
            verdict.probability,
            verdict.ms,
            why,
        )
        self._publish(
            TurnVerdictEvent(
                verdict.complete,
                round(verdict.probability, 3),
                round(verdict.ms, 1),
                ended_turn=bool(events),
                overruled_by_words=overruled,
                stream_s=event.utterance.end_s,
            )
        )
        if events:
            on_events(events)

    def close(self) -> None:
        self._executor.close()
