"""How long and when, as people say it: "five minutes", "an hour and a half", "at 6 pm", "tomorrow at nine",
"in 20 minutes", "on Friday at noon". Pure functions of the text and the current local time; what they cannot read
raises :class:`WhenError` with the short sentence the assistant says back."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from voiceos.spoken.numbers import parse_number
from voiceos.spoken.times import WEEKDAYS


class WhenError(ValueError):
    """The time or duration cannot be used; ``str(err)`` is what the assistant says."""


UNIT_SECONDS = {
    "second": 1,
    "sec": 1,
    "minute": 60,
    "min": 60,
    "hour": 3600,
    "hr": 3600,
    "day": 86400,
    "week": 604800,
}
UNIT = r"(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?)\b"
AMOUNT = re.compile(rf"(?P<amount>[\w.,'+−-]+(?: [\w.,'+−-]+)*?)\s*{UNIT}(?P<half> and a half)?", re.IGNORECASE)


def _unit_seconds(unit: str) -> int:
    unit = unit.lower().rstrip("s")
    return UNIT_SECONDS[unit]


def _amount(words: str) -> float | None:
    words = re.sub(r"^(?:and|,)\s+", "", words.strip().lower())
    if words in ("a", "an", "one", "a single"):
        return 1.0
    if words in ("half a", "half an", "a half", "half"):
        return 0.5
    if words in ("a quarter of an", "a quarter of a", "quarter of an", "quarter of a"):
        return 0.25
    if words in ("a couple of", "a couple", "couple of"):
        return 2.0
    return parse_number(words)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` ("five minutes", "1 hour and 30 minutes", "half an hour", "an hour and a half",
    "2.5 hours"); :class:`WhenError` when it names no duration or a negative or zero one."""
    cleaned = re.sub(r"(?<=\d)-(?=[a-z])", " ", text.strip().lower())  # "5-minute"
    cleaned = cleaned.strip(" .?!")
    total, found, position = 0.0, False, 0
    for match in AMOUNT.finditer(cleaned):
        between = cleaned[position : match.start()].strip(" ,")
        if between not in ("", "and"):
            break
        amount = _amount(match.group("amount"))
        if amount is None:
            raise WhenError("I didn't catch how long. Say, for example: set a timer for five minutes.")
        if match.group("half"):
            amount += 0.5
        total += amount * _unit_seconds(match.group("unit"))
        found, position = True, match.end()
    if not found or cleaned[position:].strip(" ,"):
        raise WhenError("I didn't catch how long. Say, for example: set a timer for five minutes.")
    if total < 0:
        raise WhenError("A timer can't run for a negative time.")
    if total < 1:
        raise WhenError("That's too short for a timer: give it at least a second.")
    return total


# -- when a reminder is due ----------------------------------------------------------------------------------------
NAMED_TIMES = {"noon": time(12), "midday": time(12), "midnight": time(0)}
PARTS_OF_DAY = {"morning": time(9), "afternoon": time(15), "evening": time(18), "tonight": time(20), "night": time(20)}
PAST_WORDS = re.compile(
    r"\b(?:yesterday|last (?:night|week|monday|tuesday|wednesday|thursday|friday|saturday|sunday)|ago)\b"
)
MINUTE_WORDS = {"quarter": 15, "half": 30}


def _clock_time(text: str) -> tuple[int, int, str | None] | None:
    """(hour, minute, "am"/"pm"/None) from "6", "6 pm", "6:30pm", "18:30", "half past six", "quarter to seven",
    "ten past six", "six thirty", "6 o'clock"; None when ``text`` is no time of day."""
    text = text.strip().lower().replace(".", "").replace("o'clock", "").strip()
    text = re.sub(r"(?<=\d)(?=[ap]\s?m\b)", " ", text)  # "9am"
    text = re.sub(r"\b(a\s?m|p\s?m)\b", lambda m: m.group(1).replace(" ", ""), text)
    meridiem = None
    found = re.search(r"\s*\b(am|pm|in the morning|in the afternoon|in the evening|at night|tonight)$", text)
    if found:
        meridiem = "am" if found.group(1) in ("am", "in the morning") else "pm"
        text = text[: found.start()].strip()
    if text in NAMED_TIMES:
        named = NAMED_TIMES[text]
        return named.hour, named.minute, "24h"
    relative = re.fullmatch(r"(?:(?P<minutes>.+?) (?:minutes? )?)?(?P<dir>past|after|to|before) (?P<hour>.+)", text)
    if relative:
        hour = parse_number(relative.group("hour"))
        words = (relative.group("minutes") or "").strip()
        minutes = MINUTE_WORDS.get(words.removeprefix("a ")) if words else None
        if minutes is None and words:
            number = parse_number(words)
            minutes = int(number) if number is not None and number == int(number) else None
        if hour is None or minutes is None or not (0 < minutes < 60) or hour != int(hour):
            return None
        if relative.group("dir") in ("to", "before"):
            return (int(hour) - 1) % 24, 60 - minutes, meridiem
        return int(hour), minutes, meridiem
    digital = re.fullmatch(r"(\d{1,2})(?::|h)(\d{2})", text) or re.fullmatch(r"(\d{1,2})()", text)
    if digital:
        hour, minute = int(digital.group(1)), int(digital.group(2) or 0)
    else:
        words = text.split()
        hour_value = parse_number(words[0]) if words else None
        if hour_value is None or hour_value != int(hour_value):
            return None
        hour, minute = int(hour_value), 0
        if len(words) > 1:  # "six thirty", "nine oh five"
            minute_value = parse_number(" ".join(w for w in words[1:] if w != "oh"))
            if minute_value is None or minute_value != int(minute_value):
                return None
            minute = int(minute_value)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    if hour > 12 or hour == 0:
        meridiem = "24h"
    return hour, minute, meridiem


def _at(day: datetime, hour: int, minute: int, meridiem: str | None, now: datetime, *, day_given: bool) -> datetime:
    """The moment on ``day`` (or, with no day given, the next one after ``now``) at that clock time."""
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    candidates = [hour] if meridiem is not None else sorted({hour % 12, hour % 12 + 12})
    base = day.replace(hour=0, minute=0, second=0, microsecond=0)
    for h in candidates:
        moment = base + timedelta(hours=h, minutes=minute)
        if moment > now:
            return moment
    if day_given:  # "tomorrow at 6": the morning one, unless said otherwise
        return base + timedelta(hours=candidates[0], minutes=minute)
    return base + timedelta(days=1, hours=candidates[0], minutes=minute)


def parse_when(text: str, now: datetime) -> datetime:
    """The moment ``text`` names, after ``now`` (aware, local): "in 20 minutes", "at 6 pm", "tomorrow at 9",
    "tonight", "on Friday at noon". :class:`WhenError` for a time in the past or one it cannot read."""
    said = " ".join(text.lower().strip(" .?!,").split())
    said = re.sub(r"^(?:at|by|on|for)\s+", "", said)
    if not said:
        raise WhenError("When should I remind you? Say, for example: remind me to call Sam at 6 pm.")
    if PAST_WORDS.search(said):
        raise WhenError("That time has already passed. I can only remind you of something in the future.")
    if said.startswith(("in ", "after ")):
        return now + timedelta(seconds=parse_duration(said.split(" ", 1)[1]))
    day, day_given, default_time = now, False, None
    rest = said
    day_word = re.match(r"(today|tonight|tomorrow|the day after tomorrow)\b\s*", rest)
    weekday = re.match(r"(?:on |next |this )?(" + "|".join(w.lower() for w in WEEKDAYS) + r")\b\s*", rest)
    if day_word:
        word = day_word.group(1)
        day_given = True
        if word == "tonight":
            default_time = PARTS_OF_DAY["tonight"]
        elif word == "tomorrow":
            day = now + timedelta(days=1)
        elif word == "the day after tomorrow":
            day = now + timedelta(days=2)
        rest = rest[day_word.end() :]
    elif weekday:
        ahead = (WEEKDAYS.index(weekday.group(1).capitalize()) - now.weekday()) % 7 or 7
        day, day_given = now + timedelta(days=ahead), True
        rest = rest[weekday.end() :]
    rest = re.sub(r"^(?:at|by|in the|around|about)\s+", "", rest.strip())
    part = re.fullmatch(r"(?:in the )?(morning|afternoon|evening|night)", rest)
    if part:
        default_time, rest = PARTS_OF_DAY[part.group(1)], ""
    if not rest:
        if not day_given and default_time is None:
            raise WhenError("When should I remind you? Say, for example: remind me to call Sam at 6 pm.")
        chosen = default_time or time(9)
        moment = day.replace(hour=chosen.hour, minute=chosen.minute, second=0, microsecond=0)
    else:
        clock = _clock_time(rest)
        if clock is None:
            raise WhenError("I didn't catch the time. Say, for example: remind me to call Sam at 6 pm.")
        hour, minute, meridiem = clock
        if meridiem is None and default_time is not None:  # "tonight at 8"
            meridiem = "pm" if default_time.hour >= 12 else "am"
        moment = _at(day, hour, minute, None if meridiem == "24h" else meridiem, now, day_given=day_given)
        if meridiem == "24h":
            moment = day.replace(hour=hour, minute=minute, second=0, microsecond=0)
            if moment <= now and not day_given:
                moment += timedelta(days=1)
    if moment <= now:
        raise WhenError("That time has already passed. I can only remind you of something in the future.")
    return moment
