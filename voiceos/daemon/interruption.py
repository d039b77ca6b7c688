"""When speech heard over the assistant's reply interrupts it: a small strategy, pure logic.

A turn starts once the VAD has heard ``vad.start_ms`` of voice (90 ms by default): quick, as the end of a user's
turn should be. Stopping the assistant on as little would let a cough, a short "mm-hm", a door, or a few frames
of its own echo that the canceller let through (a timing hiccup on a loaded machine) cut its reply. So, like
LiveKit Agents' ``min_interruption_duration``, the user interrupts once they have spoken ``min_ms`` of voiced
audio over the reply; speech that began over the reply and stopped short of that is dropped as a whole (no
interruption, and no turn of its own).
"""

from __future__ import annotations

from typing import Generic, TypeVar

Turn = TypeVar("Turn")

__all__ = ["MinSpeechInterruption"]


class MinSpeechInterruption(Generic[Turn]):
    """Tracks the utterance in progress if it began while ``turn`` was speaking; ``min_ms=0`` interrupts at once."""

    def __init__(self, min_ms: int) -> None:
        if min_ms < 0:
            raise ValueError(f"min_ms must be >= 0, got {min_ms}")
        self.min_s = min_ms / 1000
        self._over: Turn | None = None  # the reply the current utterance began over
        self._fired = False
        self._min_now = self.min_s  # the minimum for the current utterance

    @property
    def over(self) -> Turn | None:
        """The reply the current utterance began over, if any."""
        return self._over

    def started_over(self, turn: Turn, min_ms: int | None = None) -> None:
        """An utterance began while ``turn`` was speaking (``min_ms``: this turn's own minimum, e.g. an alarm's)."""
        self._over, self._fired = turn, False
        self._min_now = self.min_s if min_ms is None else min_ms / 1000

    def due(self, voiced_s: float) -> Turn | None:
        """The turn to interrupt now that the open utterance has ``voiced_s`` of voice; once per utterance."""
        if self._over is None or self._fired or voiced_s < self._min_now:
            return None
        self._fired = True
        return self._over

    def ended(self, voiced_s: float) -> bool:
        """The utterance ended with ``voiced_s`` of voice; True if it is to be dropped (too short to interrupt)."""
        drop = self._over is not None and not self._fired and voiced_s < self._min_now
        self._over, self._fired = None, False
        self._min_now = self.min_s
        return drop
