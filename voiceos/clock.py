"""The assistant's clock: the local wall time (for "what time is it" and reminders) and a monotonic one (for
timers). Injected wherever time is read, so tests and probes run against a fixed or stepped clock, never by
sleeping."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The local time, time-zone aware (the system's zone)."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward (timers run on these)."""
        ...


class SystemClock:
    """This machine's clock, in its local time zone."""

    def now(self) -> datetime:
        return datetime.now().astimezone()

    def monotonic(self) -> float:
        return time.monotonic()


class FixedClock:
    """A clock that stands still at ``at`` until :meth:`advance` moves it (tests, probes, ``chat --now``)."""

    def __init__(self, at: datetime) -> None:
        self._at = at if at.tzinfo is not None else at.astimezone()
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._at

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._at += timedelta(seconds=seconds)
        self._monotonic += seconds
