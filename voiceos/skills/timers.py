"""Timers by voice, with Home Assistant's timer intents: start (optionally named), status, cancel (one or all),
pause, resume, add or take away time. The timers themselves live in the daemon (voiceos.alarms.TimerBoard), which
rings them; a one-shot ``voiceos say`` has none and says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from voiceos.alarms import Timer, TimerBoard, TimerError
from voiceos.skills.base import NEEDS_DAEMON, FollowUp, SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch
from voiceos.spoken.numbers import say_number
from voiceos.spoken.times import say_duration
from voiceos.spoken.when import WhenError, parse_duration

NOT_NAMES = frozenset({"a", "an", "the", "my", "new", "another", "one", "timer"})


def _seconds(match: IntentMatch, prefix: str = "") -> float:
    """HA's number slots (hours, minutes, seconds; ``start_`` ones name an existing timer) as seconds."""
    total = 0.0
    for unit, scale in (("hours", 3600), ("minutes", 60), ("seconds", 1)):
        value = match.value(prefix + unit)
        if value is not None:
            total += float(value) * scale
    return total


def _name(match: IntentMatch) -> str | None:
    name = match.words("name").strip(" .?!,").lower()
    words = [w for w in name.split() if w not in NOT_NAMES]
    return " ".join(words) or None


def _list(timers: Sequence[Timer]) -> str:
    names = [t.describe() for t in timers]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class Timers:
    intents: ClassVar[tuple[str, ...]] = (
        "HassStartTimer",
        "HassTimerStatus",
        "HassCancelTimer",
        "HassCancelAllTimers",
        "HassPauseTimer",
        "HassUnpauseTimer",
        "HassIncreaseTimer",
        "HassDecreaseTimer",
    )

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        match = matches[0]
        board = context.timers
        if board is None:
            return SkillReply(NEEDS_DAEMON.format(what="Timers"), match.intent)
        if match.intent == "HassStartTimer":
            return self._start(matches, board)
        if match.intent == "HassTimerStatus":
            return self._status(match, board)
        if match.intent == "HassCancelAllTimers":
            count = len(board.timers)
            if not count:
                return self._nothing_running(match, context)
            speech = f"All {say_number(count)} timers cancelled." if count > 1 else "Timer cancelled."
            return SkillReply(speech, match.intent, action=lambda: board.cancel_all())
        chosen = self._which(match, board)
        if isinstance(chosen, SkillReply):
            if not board.timers:
                return self._nothing_running(match, context)
            return chosen
        timer = chosen
        label = timer.label().capitalize()
        if match.intent == "HassCancelTimer":
            return SkillReply(f"{label} timer cancelled.", match.intent, action=lambda: board.cancel(timer))
        if match.intent == "HassPauseTimer":
            if timer.paused:
                return SkillReply(f"{label} timer is already paused.", match.intent)
            return SkillReply(f"{label} timer paused.", match.intent, action=lambda: board.pause(timer))
        if match.intent == "HassUnpauseTimer":
            if not timer.paused:
                return SkillReply(f"{label} timer is running.", match.intent)
            return SkillReply(f"{label} timer resumed.", match.intent, action=lambda: board.resume(timer))
        amount = _seconds(match)
        if not amount:
            return None
        sign = 1 if match.intent == "HassIncreaseTimer" else -1
        left = max(0.0, board.left(timer) + sign * amount)
        verb = "Added" if sign > 0 else "Took"
        where = "to" if sign > 0 else "off"
        return SkillReply(
            f"{verb} {say_duration(amount)} {where} {timer.describe()}: {say_duration(left)} left.",
            match.intent,
            action=lambda: board.extend(timer, sign * amount),
        )

    # -- start ---------------------------------------------------------------------------------------------------
    def _start(self, matches: Sequence[IntentMatch], board: TimerBoard) -> SkillReply:
        match = matches[0]
        if match.metadata.get("voiceos_no_duration"):
            name = _name(match)
            return SkillReply(
                "For how long?",
                match.intent,
                follow_up=FollowUp(lambda words, context: self._answer_length(words, name, context)),
            )
        seconds = _seconds(match)
        if not seconds:
            try:
                seconds = parse_duration(match.words("duration"))
            except WhenError as err:
                return SkillReply(str(err), match.intent)
        return self._set(seconds, _name(match), board, match.intent)

    def _answer_length(self, words: str, name: str | None, context: SkillContext) -> SkillReply | None:
        """The answer to "For how long?": "five minutes", "for ten seconds"."""
        said = words.strip(" .?!").lower().removeprefix("for ").removeprefix("uh ")
        try:
            seconds = parse_duration(said)
        except WhenError:
            return None
        if context.timers is None:
            return None
        return self._set(seconds, name, context.timers, "HassStartTimer")

    def _set(self, seconds: float, name: str | None, board: TimerBoard, intent: str) -> SkillReply:
        try:
            board.check_new(seconds)
        except TimerError as err:
            return SkillReply(str(err), intent)
        what = f"{name.capitalize()} timer" if name else "Timer"
        return SkillReply(f"{what} set for {say_duration(seconds)}.", intent, action=lambda: board.start(seconds, name))

    # -- the others ----------------------------------------------------------------------------------------------
    def _status(self, match: IntentMatch, board: TimerBoard) -> SkillReply:
        timers = board.find(_name(match), _seconds(match, "start_") or None) if match.slots else board.timers
        if not timers:
            return SkillReply(
                "You have no timers running." if not board.timers else "I can't find that timer.", match.intent
            )

        def state(timer: Timer) -> str:
            left = say_duration(board.left(timer))
            return f"{left} left, paused" if timer.paused else f"{left} left"

        if len(timers) == 1:
            timer = timers[0]
            verb = "is paused with" if timer.paused else "has"
            return SkillReply(
                f"Your {timer.label()} timer {verb} {say_duration(board.left(timer))} left.", match.intent
            )
        parts = [f"{t.describe()}, {state(t)}" for t in timers]
        listed = f"{'; '.join(parts[:-1])}; and {parts[-1]}"
        return SkillReply(f"You have {say_number(len(timers))} timers: {listed}.", match.intent)

    def _which(self, match: IntentMatch, board: TimerBoard) -> Timer | SkillReply:
        name, seconds = _name(match), _seconds(match, "start_") or None
        timers = board.find(name, seconds)
        if len(timers) == 1:
            return timers[0]
        if not timers:
            return SkillReply(
                "I can't find that timer." if board.timers else "You have no timers running.", match.intent
            )
        return SkillReply(f"You have {say_number(len(timers))} timers: {_list(timers)}. Which one?", match.intent)

    def _nothing_running(self, match: IntentMatch, context: SkillContext) -> SkillReply:
        """No timer runs: "stop the timer" while one rings silences it; else say so."""
        if context.alarms.ringing():
            return SkillReply("", match.intent, action=context.alarms.silence)
        return SkillReply("You have no timers running.", match.intent)
