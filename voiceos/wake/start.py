"""The turn-start strategies: given what an utterance said (its transcript, the same the reply needs), is it for the
assistant, and what is the request? Pure logic on an injected monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, cast

from voiceos.config import WakeOptions
from voiceos.wake.names import NameSpotter, Placement


class TurnStart(Protocol):
    name: str

    def accept(self, transcript: str, started_at: float | None = None) -> str | None:
        """The request to answer (the name taken out), or None: the utterance was not for the assistant.
        ``started_at``: when the user began saying it (the clock's time; None: now)."""
        ...

    def conversing(self) -> None:
        """The assistant is speaking, or has just spoken: what follows is a follow-up."""
        ...

    def open_at(self, started_at: float | None = None) -> bool:
        """Whether an utterance begun at ``started_at`` (None: now) is for the assistant whatever it says, so that
        its words may be shown before it ends (``partial_transcript``)."""
        ...

    def how_to_talk(self) -> str:
        """One line for the log, ``status`` and ``doctor``."""
        ...


class AlwaysStart:
    """Every utterance is for the assistant."""

    name = "always"

    def accept(self, transcript: str, started_at: float | None = None) -> str | None:
        return transcript

    def conversing(self) -> None:
        pass

    def open_at(self, started_at: float | None = None) -> bool:
        return True

    def how_to_talk(self) -> str:
        return "Listening: just talk to me."


class NameStart:
    """An utterance is for the assistant when it says one of its names where ``placement`` allows, or when it comes
    within ``follow_up_s`` of the assistant's last words (the way people keep talking to someone who just answered)."""

    name = "name"

    def __init__(
        self, spotter: NameSpotter, follow_up_s: float, *, call_name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spotter, self.follow_up_s, self.call_name, self.clock = spotter, follow_up_s, call_name, clock
        self._open_until = float("-inf")

    def in_follow_up(self, at: float | None = None) -> bool:
        return (self.clock() if at is None else at) <= self._open_until

    def open_at(self, started_at: float | None = None) -> bool:
        return self.in_follow_up(started_at)  # (the name may come last: only a follow-up is known to be for it)

    def accept(self, transcript: str, started_at: float | None = None) -> str | None:
        spotted = self.spotter.spot(transcript)
        if spotted is not None:
            return spotted.request
        return transcript if self.in_follow_up(started_at) else None

    def conversing(self) -> None:
        self._open_until = self.clock() + self.follow_up_s

    def how_to_talk(self) -> str:
        return f"Listening. Say '{self.call_name}, ...' to talk to me."


def load_turn_start(options: WakeOptions, persona_name: str, clock: Callable[[], float] = time.monotonic) -> TurnStart:
    if options.mode == "always":
        return AlwaysStart()
    names = [n.strip() for n in (options.names or persona_name).split(",") if n.strip()]
    spotter = NameSpotter(names, cast(Placement, options.placement))  # config admits only the three
    return NameStart(spotter, options.follow_up_s, call_name=names[0], clock=clock)
