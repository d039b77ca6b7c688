"""Reminders by voice: "remind me to call my mother at 6 pm", "... in 20 minutes", "... tomorrow at 9", and listing
and cancelling them. The time words are read by voiceos.spoken.when; the reminders are kept on disk and rung by the
daemon (voiceos.alarms.reminders)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from voiceos.alarms import ReminderBook, ReminderError
from voiceos.alarms.reminders import as_told
from voiceos.skills.base import NEEDS_DAEMON, FollowUp, SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch
from voiceos.spoken.numbers import say_number
from voiceos.spoken.times import say_when
from voiceos.spoken.when import WhenError, parse_when

ASK_WHEN = "When should I remind you?"
TIMEISH = re.compile(
    r"\d|\b(?:at|in|on|by|tomorrow|tonight|today|yesterday|ago|last|noon|midnight|morning|evening|am|pm)\b", re.I
)


def _when_words(match: IntentMatch) -> str:
    """The time as said: "tomorrow at 9", "in 20 minutes", "at 6 pm"."""
    parts = [match.words("when_day"), match.words("when_prep"), match.words("when")]
    return " ".join(p for p in parts if p)


class Reminders:
    intents: ClassVar[tuple[str, ...]] = ("VoiceosSetReminder", "VoiceosListReminders", "VoiceosCancelReminder")

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        match = matches[0]
        book = context.reminders
        if book is None:
            return SkillReply(NEEDS_DAEMON.format(what="Reminders"), match.intent)
        if match.intent == "VoiceosSetReminder":
            return self._set(matches, book, context)
        if match.intent == "VoiceosListReminders":
            return self._list(match, book, context)
        return self._cancel(match, book)

    def _set(self, matches: Sequence[IntentMatch], book: ReminderBook, context: SkillContext) -> SkillReply:
        """The first parse whose time can be read wins; with none, the first time's problem is said, or, when no
        time was given at all, the question "when?" (the next words answer it)."""
        now = context.clock.now()
        problem: str | None = None
        untimed: IntentMatch | None = None
        for match in matches:
            task = match.words("task")
            if match.metadata.get("voiceos_no_time"):
                untimed = untimed or match
                continue
            try:
                due = parse_when(_when_words(match), now)
            except WhenError as err:
                problem = problem or str(err)
                continue
            return self._add(task, due, book, match.intent, now)
        if untimed is not None and (problem is None or not TIMEISH.search(untimed.words("task"))):
            task = untimed.words("task")
            if not task:
                return SkillReply("What should I remind you of?", untimed.intent)
            return SkillReply(
                ASK_WHEN,
                untimed.intent,
                follow_up=FollowUp(lambda words, ctx: self._answer_when(words, task, ctx)),
            )
        return SkillReply(problem or ASK_WHEN, matches[0].intent)

    def _answer_when(self, words: str, task: str, context: SkillContext) -> SkillReply | None:
        if context.reminders is None:
            return None
        now = context.clock.now()
        try:
            due = parse_when(words, now)
        except WhenError:
            return None
        return self._add(task, due, context.reminders, "VoiceosSetReminder", now)

    def _add(self, task: str, due: datetime, book: ReminderBook, intent: str, now: datetime) -> SkillReply:
        told = as_told(task)
        try:
            book.check_new(due)
        except ReminderError as err:
            return SkillReply(str(err), intent)
        return SkillReply(
            f"Okay, I'll remind you to {told} {say_when(due, now)}.", intent, action=lambda: book.add(told, due)
        )

    def _list(self, match: IntentMatch, book: ReminderBook, context: SkillContext) -> SkillReply:
        reminders = book.reminders
        if not reminders:
            return SkillReply("You have no reminders.", match.intent)
        now = context.clock.now()
        parts = [f"to {r.task} {say_when(r.due, now)}" for r in reminders[:5]]
        more = f", and {say_number(len(reminders) - 5)} more" if len(reminders) > 5 else ""
        count = "one reminder" if len(reminders) == 1 else f"{say_number(len(reminders))} reminders"
        listed = parts[0] if len(parts) == 1 else f"{'; '.join(parts[:-1])}; and {parts[-1]}"
        return SkillReply(f"You have {count}: {listed}{more}.", match.intent)

    def _cancel(self, match: IntentMatch, book: ReminderBook) -> SkillReply:
        reminders = book.reminders
        if not reminders:
            return SkillReply("You have no reminders.", match.intent)
        if match.metadata.get("voiceos_all"):
            count = len(reminders)
            speech = f"All {say_number(count)} reminders cancelled." if count > 1 else "Reminder cancelled."
            return SkillReply(speech, match.intent, action=lambda: book.cancel_all())
        task = match.words("task")
        found = book.find(task) if task else reminders
        if not found:
            return SkillReply("I can't find that reminder.", match.intent)
        if len(found) > 1:
            listed = " or ".join(f"to {r.task}" for r in found[:3])
            return SkillReply(f"You have {say_number(len(found))} reminders: {listed}. Which one?", match.intent)
        reminder = found[0]
        return SkillReply(
            f"Cancelled the reminder to {reminder.task}.", match.intent, action=lambda: book.cancel(reminder)
        )
