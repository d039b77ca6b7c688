"""Times, dates and durations the way people say them aloud ("ten past two in the afternoon", "Monday the seventh of
December", "one hour and thirty minutes"), written in words so the voice reads them as a person would."""

from __future__ import annotations

from datetime import date, datetime

from voiceos.spoken.numbers import say_number, say_ordinal, say_year

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _hour_word(hour24: int) -> str:
    return say_number(hour24 % 12 or 12)


def part_of_day(hour24: int) -> str:
    if 1 <= hour24 < 12:  # "two in the morning", as people say it
        return "in the morning"
    if 12 <= hour24 < 18:
        return "in the afternoon"
    if 18 <= hour24 < 22:
        return "in the evening"
    return "at night"


def say_clock(at: datetime, *, with_part_of_day: bool = True) -> str:
    """The time of day in words: "ten past two in the afternoon", "quarter to nine", "two fifty-three", "noon"."""
    hour, minute = at.hour, at.minute
    if minute == 0 and hour in (0, 12):
        return "midnight" if hour == 0 else "noon"
    if minute == 0:
        words = f"{_hour_word(hour)} o'clock"
    elif minute == 15:
        words = f"quarter past {_hour_word(hour)}"
    elif minute == 30:
        words = f"half past {_hour_word(hour)}"
    elif minute == 45:
        words = f"quarter to {_hour_word(hour + 1)}"
    elif minute % 5 == 0 and minute < 30:
        words = f"{say_number(minute)} past {_hour_word(hour)}"
    elif minute % 5 == 0:
        words = f"{say_number(60 - minute)} to {_hour_word(hour + 1)}"
    elif minute < 10:
        words = f"{_hour_word(hour)} oh {say_number(minute)}"
    else:
        words = f"{_hour_word(hour)} {say_number(minute)}"
    return f"{words} {part_of_day(hour)}" if with_part_of_day else words


def say_date(day: date, *, with_year: bool = False) -> str:
    """ "Monday the seventh of December" (", twenty twenty-six" with the year)."""
    text = f"{WEEKDAYS[day.weekday()]} the {say_ordinal(day.day)} of {MONTHS[day.month - 1]}"
    if with_year:
        text += f", {say_year(day.year)}"
    return text


def say_duration(seconds: float) -> str:
    """A duration in words, largest unit first, zero parts left out: "one hour and thirty minutes"."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{say_number(n)} {unit}{'s' if n != 1 else ''}"
        for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if n
    ]
    if not parts:
        return "no time"
    if len(parts) == 1:
        return parts[0]
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


def say_when(at: datetime, now: datetime) -> str:
    """When a reminder is due, relative to ``now``: "at six in the evening", "tomorrow at nine in the morning",
    "on Friday at noon", "on Monday the fourth of January at ten o'clock in the morning"."""
    clock = say_clock(at)
    days = (at.date() - now.date()).days
    if days == 0:
        return f"at {clock}"
    if days == 1:
        return f"tomorrow at {clock}"
    if 1 < days < 7:
        return f"on {WEEKDAYS[at.weekday()]} at {clock}"
    return f"on {say_date(at.date())} at {clock}"
