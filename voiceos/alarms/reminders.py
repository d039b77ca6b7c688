"""Reminders: "remind me to call my mother at 6 pm". Kept on disk (they are for later, and survive a restart) under
the same rules as the memory: ``$XDG_DATA_HOME/voiceos/reminders.json``, 0600 in a 0700 directory; ``voiceos
forget`` erases it; ``voiceos reminders`` lists it. Due times are local wall-clock times (time-zone aware).

Another process may add a reminder to the file (``voiceos chat`` while the daemon runs): the book re-reads the file
when it changed, before each read, so whichever process runs rings it, once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from voiceos.clock import Clock
from voiceos.spoken.numbers import plural
from voiceos.storage import data_dir, write_private_json

log = logging.getLogger(__name__)

REMINDERS_FILE = "reminders.json"
MAX_AHEAD_DAYS = 366


class ReminderError(ValueError):
    """A reminder request that cannot be done; ``str(err)`` is what the assistant says."""


def reminders_path() -> Path:
    return data_dir() / REMINDERS_FILE


@dataclass(frozen=True)
class Reminder:
    id: str
    task: str  # in the user's words turned to the assistant's: "call your mother"
    due: datetime
    created: datetime

    def notice(self) -> str:
        return f"Reminder: {self.task}."

    def as_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "task": self.task,
            "due": self.due.isoformat(timespec="seconds"),
            "created": self.created.isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, data: dict) -> Reminder:
        return cls(
            str(data["id"]),
            str(data["task"]),
            datetime.fromisoformat(data["due"]),
            datetime.fromisoformat(data["created"]),
        )


SWAPS = {
    "my": "your",
    "mine": "yours",
    "me": "you",
    "myself": "yourself",
    "i": "you",
    "i'm": "you're",
    "i've": "you've",
    "i'll": "you'll",
    "am": "are",
    "your": "my",
    "yours": "mine",
    "yourself": "myself",
}


def as_told(task: str) -> str:
    """The task as the assistant says it back: "call my mother" -> "call your mother"."""
    words = task.strip(" .?!,").split()
    out = []
    for word in words:
        swapped = SWAPS.get(word.lower())
        out.append(swapped if swapped is not None else word)
    text = " ".join(out)
    return re.sub(r"^to\s+", "", text)


class ReminderBook:
    """The reminders, soonest first; ``path`` None keeps them in memory only (tests)."""

    def __init__(self, clock: Clock, path: Path | None = None, *, max_reminders: int = 50) -> None:
        self.clock = clock
        self.path = path
        self.max_reminders = max_reminders
        self._lock = threading.RLock()
        self._reminders: dict[str, Reminder] = {}
        self._mtime: float | None = None
        self.on_change: Callable[[], object] | None = None
        self._reload(force=True)

    @property
    def reminders(self) -> list[Reminder]:
        with self._lock:
            self._reload()
            return sorted(self._reminders.values(), key=lambda r: r.due)

    def find(self, words: str) -> list[Reminder]:
        """Reminders whose task shares the content words of ``words`` (all of them)."""
        wanted = _content_words(as_told(words))
        if not wanted:
            return []
        return [r for r in self.reminders if wanted <= _content_words(r.task)]

    def check_new(self, due: datetime) -> None:
        now = self.clock.now()
        if due <= now:
            raise ReminderError("That time has already passed. I can only remind you of something in the future.")
        if (due - now).days > MAX_AHEAD_DAYS:
            raise ReminderError("That's too far ahead: I keep reminders for up to a year.")
        if len(self.reminders) >= self.max_reminders:
            raise ReminderError(
                f"You already have {plural(len(self.reminders), 'reminder')}, as many as I keep. Cancel one first."
            )

    def add(self, task: str, due: datetime) -> Reminder:
        self.check_new(due)
        reminder = Reminder(uuid.uuid4().hex[:8], task, due, self.clock.now())
        with self._lock:
            self._reload()
            self._reminders[reminder.id] = reminder
            self._save()
        self._changed()
        return reminder

    def cancel(self, reminder: Reminder) -> None:
        with self._lock:
            self._reload()
            self._reminders.pop(reminder.id, None)
            self._save()
        self._changed()

    def cancel_all(self) -> int:
        with self._lock:
            self._reload()
            count = len(self._reminders)
            self._reminders.clear()
            self._save()
        self._changed()
        return count

    def next_due_in(self) -> float | None:
        reminders = self.reminders
        if not reminders:
            return None
        return max(0.0, (reminders[0].due - self.clock.now()).total_seconds())

    def pop_due(self) -> list[Reminder]:
        """The reminders that are due (overdue ones too, after a restart), removed from the book and the file."""
        now = self.clock.now()
        with self._lock:
            self._reload()
            due = [r for r in self._reminders.values() if r.due <= now]
            for reminder in due:
                del self._reminders[reminder.id]
            if due:
                self._save()
        return sorted(due, key=lambda r: r.due)

    # -- the file ------------------------------------------------------------------------------------------------
    def _reload(self, force: bool = False) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            if self._mtime is not None or force:
                self._reminders, self._mtime = {}, None
            return
        except OSError as err:
            log.warning("cannot read the reminders file %s: %s", self.path, err.strerror or err)
            return
        if not force and mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._reminders = {r.id: r for r in map(Reminder.from_json, data["reminders"])}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("ignoring the reminders file %s: it cannot be read (%s)", self.path, err)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_private_json(self.path, {"version": 1, "reminders": [r.as_json() for r in self._reminders.values()]})
            self._mtime = self.path.stat().st_mtime
        except OSError as err:
            log.warning("cannot save the reminders to %s: %s", self.path, err.strerror or err)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


STOP_WORDS = frozenset(["a", "an", "the", "to", "my", "your", "me", "you", "i", "about", "of", "for", "and"])


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOP_WORDS}


def reminders_command(book: ReminderBook | None, cancel: object = None) -> dict:
    """The ``reminders`` control command and ``voiceos reminders``: the reminders, after cancelling number ``cancel``
    (1-based, as listed) if given."""
    from voiceos.errors import VoiceosError

    if book is None:
        return {"reminders": [], "cancelled": None}
    cancelled = None
    if cancel is not None:
        reminders = book.reminders
        if isinstance(cancel, bool) or not isinstance(cancel, int):
            raise VoiceosError("'cancel' must be a reminder number, as `voiceos reminders` lists them")
        if not 1 <= cancel <= len(reminders):
            raise VoiceosError(f"no reminder number {cancel} (there are {len(reminders)})")
        book.cancel(reminders[cancel - 1])
        cancelled = reminders[cancel - 1].as_json()
    return {"reminders": [r.as_json() for r in book.reminders], "cancelled": cancelled}
