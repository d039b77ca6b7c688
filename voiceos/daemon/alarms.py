"""The daemon's alarm clock: rings finished timers and due reminders through the same playback path as a reply.

When one is due, its event goes out at once (``timer_finished``, ``reminder_due``); its notice (a chime, then "Your
five minute timer is done.") waits until the conversation leaves room (no turn runs, the user is not speaking),
then is said as a turn of its own, so barge-in, echo cancellation and the speaking events work as for a reply. It is
said again ``skills.ring_times`` times, ``skills.ring_interval_s`` apart, until the user speaks (any voice over it
cuts it at once, and ends the ringing) or says "stop" (the stop skill calls :meth:`AlarmRinger.silence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from voiceos.alarms import ReminderBook, TimerBoard
from voiceos.config import SkillOptions
from voiceos.events import ReminderDue, TimerFinished, TimerStarted

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.1  # how often a waiting notice looks whether the conversation left room
MAX_WAIT_S = 3600.0  # the longest sleep with nothing due (a reminder added by another process is read then)


class AlarmRinger:
    """Watches ``timers`` and ``reminders``; ``announce(notice)`` says a notice as a turn and returns when it was
    heard or cut; ``idle()`` says whether the conversation leaves room for it now."""

    def __init__(
        self,
        timers: TimerBoard,
        reminders: ReminderBook,
        options: SkillOptions,
        *,
        announce: Callable[[str], Awaitable[Any]],
        idle: Callable[[], bool],
        publish: Callable[[Any], None],
        publish_threadsafe: Callable[[Any], None],
    ) -> None:
        self.timers, self.reminders, self.options = timers, reminders, options
        self._announce, self._idle, self._publish = announce, idle, publish
        self._wake = asyncio.Event()
        self._quiet = asyncio.Event()  # set: the ringing in progress stops (the user spoke or said stop)
        self._ringing = False
        self._loop = loop = asyncio.get_running_loop()  # built on the daemon's loop
        timers.on_change = reminders.on_change = lambda: loop.call_soon_threadsafe(self._wake.set)
        timers.on_started = lambda timer: publish_threadsafe(TimerStarted(timer.id, timer.seconds, timer.name))

    @property
    def ringing(self) -> bool:
        return self._ringing

    def silence(self) -> None:
        """Stop the ringing in progress (from any thread: the stop skill runs on the model thread)."""
        self._loop.call_soon_threadsafe(self._quiet.set)

    def user_spoke(self) -> None:
        """The user started speaking (on the event loop): a ringing alarm was heard."""
        if self._ringing:
            self._quiet.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            notices = self._take_due()
            if notices:
                await self._ring(" ".join(notices), stop)
                continue
            waits = [w for w in (self.timers.next_due_in(), self.reminders.next_due_in()) if w is not None]
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min([*waits, MAX_WAIT_S]) + 0.01)

    def _take_due(self) -> list[str]:
        notices = []
        for timer in self.timers.pop_due():
            notice = timer.notice()
            self._publish(TimerFinished(timer.id, timer.seconds, timer.name, notice))
            notices.append(notice)
        for reminder in self.reminders.pop_due():
            notice = reminder.notice()
            self._publish(ReminderDue(reminder.id, reminder.task, reminder.due.isoformat(timespec="seconds"), notice))
            notices.append(notice)
        if notices:
            log.info("%d alarm(s) due", len(notices))
        return notices

    async def _ring(self, notice: str, stop: asyncio.Event) -> None:
        self._quiet.clear()
        self._ringing = True
        try:
            for time in range(self.options.ring_times):
                while not self._idle() and not self._quiet.is_set() and not stop.is_set():
                    await asyncio.sleep(IDLE_POLL_S)  # a turn runs, or the user speaks: after it
                if self._quiet.is_set() or stop.is_set():
                    return
                log.info("ringing (%d of %d)", time + 1, self.options.ring_times)
                await self._announce(notice)
                if time + 1 < self.options.ring_times:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._quiet.wait(), self.options.ring_interval_s)
                if self._quiet.is_set():
                    return
        finally:
            self._ringing = False
