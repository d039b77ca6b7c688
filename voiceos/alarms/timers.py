"""Timers: several at once, optionally named, paused, resumed, extended, cancelled; pure state on an injected clock.

The daemon owns one :class:`TimerBoard` and rings what :meth:`TimerBoard.pop_due` hands it (voiceos.daemon.alarms);
the skills (voiceos.skills.timers) change it. Timers live in memory only, as Home Assistant's do: a restart ends
them (reminders, which are for later, are kept on disk: voiceos.alarms.reminders).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from voiceos.clock import Clock
from voiceos.spoken.numbers import plural
from voiceos.spoken.times import say_duration


class TimerError(ValueError):
    """A timer request that cannot be done; ``str(err)`` is what the assistant says."""


@dataclass
class Timer:
    id: int
    seconds: float  # the length asked for: it names the timer ("your five minute timer")
    name: str | None
    ends_at: float | None  # monotonic; None while paused
    left_when_paused: float = 0.0

    @property
    def paused(self) -> bool:
        return self.ends_at is None

    def left(self, now: float) -> float:
        return self.left_when_paused if self.ends_at is None else max(0.0, self.ends_at - now)

    def describe(self) -> str:
        """ "the pasta timer", "the five minute timer"."""
        return f"the {self.label()} timer"

    def notice(self) -> str:
        """What is said when it is done: "Your five minute timer is done." """
        return f"Your {self.label()} timer is done."

    def label(self) -> str:
        if self.name:
            return self.name
        return _length_label(self.seconds)

    def as_json(self, now: float) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "left_s": round(self.left(now), 1),
            "paused": self.paused,
        }


def _length_label(seconds: float) -> str:
    """ "five minute", "one hour thirty minute", "forty-five second": how people name a timer by its length."""
    words = say_duration(seconds).replace(" and ", " ").replace(",", "")
    for unit in ("hours", "minutes", "seconds"):
        words = words.replace(unit, unit[:-1])
    return words


class TimerBoard:
    """The running timers. Thread-safe: skills change it on the model thread, the daemon rings it on its loop."""

    def __init__(self, clock: Clock, *, max_timers: int = 10, max_seconds: float = 24 * 3600) -> None:
        self.clock = clock
        self.max_timers = max_timers
        self.max_seconds = max_seconds
        self._timers: dict[int, Timer] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.on_change: Callable[[], object] | None = None  # e.g. wake the daemon's alarm loop
        self.on_started: Callable[[Timer], None] | None = None  # e.g. the daemon's timer_started event

    # -- reading -------------------------------------------------------------------------------------------------
    @property
    def timers(self) -> list[Timer]:
        with self._lock:
            return list(self._timers.values())

    def left(self, timer: Timer) -> float:
        return timer.left(self.clock.monotonic())

    def find(self, name: str | None = None, seconds: float | None = None) -> list[Timer]:
        """The timers a request names: by name, by the length it was set for, or all of them."""
        timers = self.timers
        if name:
            wanted = _plain(name)
            timers = [t for t in timers if t.name and (_plain(t.name) == wanted or wanted in _plain(t.name))]
        if seconds:
            timers = [t for t in timers if abs(t.seconds - seconds) < 0.5]
        return timers

    def check_new(self, seconds: float) -> None:
        """Raise :class:`TimerError` if a timer of ``seconds`` cannot be started now (before anything is said)."""
        if seconds > self.max_seconds:
            raise TimerError(f"Timers can run for up to {say_duration(self.max_seconds)}.")
        if len(self.timers) >= self.max_timers:
            raise TimerError(
                f"You already have {plural(len(self.timers), 'timer')}, as many as I keep. Cancel one first."
            )

    # -- changing ------------------------------------------------------------------------------------------------
    def start(self, seconds: float, name: str | None = None) -> Timer:
        self.check_new(seconds)
        with self._lock:
            timer = Timer(next(self._ids), seconds, name, self.clock.monotonic() + seconds)
            self._timers[timer.id] = timer
        if self.on_started is not None:
            self.on_started(timer)
        self._changed()
        return timer

    def cancel(self, timer: Timer) -> None:
        with self._lock:
            self._timers.pop(timer.id, None)
        self._changed()

    def cancel_all(self) -> int:
        with self._lock:
            count = len(self._timers)
            self._timers.clear()
        self._changed()
        return count

    def pause(self, timer: Timer) -> None:
        with self._lock:
            if timer.ends_at is not None:
                timer.left_when_paused = timer.left(self.clock.monotonic())
                timer.ends_at = None
        self._changed()

    def resume(self, timer: Timer) -> None:
        with self._lock:
            if timer.ends_at is None:
                timer.ends_at = self.clock.monotonic() + timer.left_when_paused
        self._changed()

    def extend(self, timer: Timer, seconds: float) -> None:
        """Add (or, negative, take away) time; a timer taken below zero is done at once."""
        with self._lock:
            if timer.ends_at is None:
                timer.left_when_paused = max(0.0, timer.left_when_paused + seconds)
            else:
                timer.ends_at = max(self.clock.monotonic(), timer.ends_at + seconds)
        self._changed()

    # -- ringing -------------------------------------------------------------------------------------------------
    def next_due_in(self) -> float | None:
        """Seconds until the next running timer is done (None: none runs)."""
        now = self.clock.monotonic()
        ends = [t.ends_at for t in self.timers if t.ends_at is not None]
        return max(0.0, min(ends) - now) if ends else None

    def pop_due(self) -> list[Timer]:
        """The timers that are done, removed from the board (the caller rings them)."""
        now = self.clock.monotonic()
        with self._lock:
            due = [t for t in self._timers.values() if t.ends_at is not None and t.ends_at <= now]
            for timer in due:
                del self._timers[timer.id]
        return due

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def _plain(name: str) -> str:
    words = [w for w in name.lower().replace("'s", "").split() if w not in ("the", "my", "a", "an", "timer")]
    return " ".join(words)
