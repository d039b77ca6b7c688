"""The daemon's side of the end-of-turn strategy: a :class:`voiceos.vad.TurnCheck` is answered off the event loop,
and a "complete" verdict ends the utterance in the endpointer if the user is still silent (voiceos.turn)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

from voiceos.events import TurnVerdictEvent
from voiceos.turn import EndOfTurn, TurnVerdict
from voiceos.vad import TurnCheck, VadEvent

log = logging.getLogger(__name__)


class TurnCompletion:
    """Asks ``strategy`` on a thread of its own (the models' thread is busy with the speculative transcript), one
    verdict at a time: a newer pause makes an older verdict moot."""

    def __init__(self, strategy: EndOfTurn, publish: Callable[[TurnVerdictEvent], None]) -> None:
        self.strategy = strategy
        self._publish = publish
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="voiceos-turn")
        self._pending: asyncio.Future | None = None

    def check(
        self,
        event: TurnCheck,
        end_turn: Callable[[tuple[float, float]], list[VadEvent]],
        on_events: Callable[[list[VadEvent]], None],
    ) -> None:
        """Ask about the pause ``event`` announced; on "complete", ``end_turn(span)`` and hand its events on."""
        if self._pending is not None:
            self._pending.cancel()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self.strategy.verdict, event.audio)
        self._pending = future

        def decided(done: asyncio.Future) -> None:
            if done.cancelled():
                return
            if self._pending is done:
                self._pending = None
            error = done.exception()
            if error is not None:  # a model that fails leaves the turn to the silence timer
                log.warning("end of turn: the turn model failed (%s); the silence timer decides", error)
                return
            verdict: TurnVerdict = done.result()
            events = end_turn(event.span) if verdict.complete else []
            log.info(
                "end of turn: %s (p=%.2f, %.0f ms)%s",
                "complete" if verdict.complete else "incomplete",
                verdict.probability,
                verdict.ms,
                "" if events or not verdict.complete else ", but the user went on",
            )
            self._publish(
                TurnVerdictEvent(
                    verdict.complete,
                    round(verdict.probability, 3),
                    round(verdict.ms, 1),
                    bool(events),
                    stream_s=event.utterance.end_s,
                )
            )
            if events:
                on_events(events)

        future.add_done_callback(decided)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
