"""The time, the date, the day, the month and the year, from the clock (the system's local time zone). A language
model cannot know these and must never be asked to make them up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from voiceos.skills.base import SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch
from voiceos.spoken.numbers import say_year
from voiceos.spoken.times import MONTHS, WEEKDAYS, say_clock, say_date


class TimeAndDate:
    intents: ClassVar[tuple[str, ...]] = ("HassGetCurrentTime", "HassGetCurrentDate", "VoiceosGetDay")

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        match = matches[0]
        now = context.clock.now()
        if match.intent == "HassGetCurrentTime":
            return SkillReply(f"It's {say_clock(now)}.", match.intent)
        if match.intent == "HassGetCurrentDate":
            return SkillReply(f"Today is {say_date(now.date())}.", match.intent)
        part = match.metadata.get("voiceos_part")
        weekday = WEEKDAYS[now.weekday()]
        if part == "year":
            return SkillReply(f"It's {say_year(now.year)}.", match.intent)
        if part == "month":
            return SkillReply(f"It's {MONTHS[now.month - 1]}.", match.intent)
        if part == "weekend":
            weekend = now.weekday() >= 5
            asked_weekend = "weekend" in match.text.lower()
            answer = "Yes" if weekend == asked_weekend else "No"
            return SkillReply(f"{answer}, today is {weekday}.", match.intent)
        if part == "weekday":
            asked = str(match.value("weekday", "")).capitalize()
            answer = "Yes" if asked == weekday else "No"
            return SkillReply(f"{answer}, today is {weekday}.", match.intent)
        if part == "elsewhere":
            return SkillReply(
                f"I only know the time here: it's {say_clock(now)}, {weekday} the "
                f"{say_date(now.date()).split(' the ', 1)[1]}.",
                match.intent,
            )
        return SkillReply(f"Today is {say_date(now.date())}.", match.intent)
