"""Numbers, times and durations as people say them and as the assistant says them back (voiceos.spoken)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from voiceos.spoken.numbers import parse_number, say_number, say_ordinal
from voiceos.spoken.times import say_clock, say_date, say_duration, say_when
from voiceos.spoken.when import WhenError, parse_duration, parse_when

NOW = datetime(2026, 12, 7, 14, 10).astimezone()  # a Monday afternoon


@pytest.mark.parametrize(
    ("said", "value"),
    [
        ("twenty five", 25),
        ("25", 25),
        ("forty-two", 42),
        ("1,250", 1250),
        ("a hundred and ten", 110),
        ("one thousand two hundred thirty four", 1234),
        ("two and a half", 2.5),
        ("three point five", 3.5),
        ("3.5", 3.5),
        ("minus five", -5),
        ("-3", -3),
        ("zero", 0),
    ],
)
def test_numbers_are_read_from_words_and_digits(said, value):
    assert parse_number(said) == value


@pytest.mark.parametrize("said", ["hello", "five minutes", "", "the capital"])
def test_words_that_are_no_number_are_none(said):
    assert parse_number(said) is None


def test_numbers_are_said_in_words():
    assert say_number(391) == "three hundred ninety-one"
    assert say_number(14.2857) == "fourteen point two nine"
    assert say_ordinal(7) == "seventh"


@pytest.mark.parametrize(
    ("hour", "minute", "said"),
    [
        (14, 10, "ten past two in the afternoon"),
        (14, 15, "quarter past two in the afternoon"),
        (14, 30, "half past two in the afternoon"),
        (14, 45, "quarter to three in the afternoon"),
        (14, 53, "two fifty-three in the afternoon"),
        (9, 7, "nine oh seven in the morning"),
        (1, 50, "ten to two in the morning"),
        (18, 0, "six o'clock in the evening"),
        (23, 20, "twenty past eleven at night"),
        (12, 0, "noon"),
        (0, 0, "midnight"),
    ],
)
def test_the_time_is_said_as_people_say_it(hour, minute, said):
    assert say_clock(NOW.replace(hour=hour, minute=minute)) == said


def test_dates_and_durations_are_said_in_words():
    assert say_date(NOW.date()) == "Monday the seventh of December"
    assert say_date(NOW.date(), with_year=True).endswith("twenty twenty-six")
    assert say_duration(300) == "five minutes"
    assert say_duration(5400) == "one hour and thirty minutes"
    assert say_duration(3725) == "one hour, two minutes and five seconds"


@pytest.mark.parametrize(
    ("said", "seconds"),
    [
        ("five minutes", 300),
        ("5 minutes", 300),
        ("45 seconds", 45),
        ("1 hour and 30 minutes", 5400),
        ("half an hour", 1800),
        ("an hour and a half", 5400),
        ("one and a half hours", 5400),
        ("2.5 hours", 9000),
        ("a minute", 60),
        ("10 minutes and 30 seconds", 630),
        ("twenty five minutes", 1500),
        ("5-minute", 300),
    ],
)
def test_durations_are_read(said, seconds):
    assert parse_duration(said) == seconds


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ("minus five minutes", "negative"),
        ("0 seconds", "too short"),
        ("blah", "how long"),
        ("five", "how long"),
    ],
)
def test_durations_that_cannot_be_used_say_why(said, why):
    with pytest.raises(WhenError, match=why):
        parse_duration(said)


@pytest.mark.parametrize(
    ("said", "due"),
    [
        ("at 6 pm", NOW.replace(hour=18, minute=0)),
        ("at 6", NOW.replace(hour=18, minute=0)),  # the next six o'clock
        ("at 6:30pm", NOW.replace(hour=18, minute=30)),
        ("at 18:30", NOW.replace(hour=18, minute=30)),
        ("at 9am", (NOW + timedelta(days=1)).replace(hour=9, minute=0)),
        ("in 20 minutes", NOW + timedelta(minutes=20)),
        ("in an hour", NOW + timedelta(hours=1)),
        ("tomorrow at 9", (NOW + timedelta(days=1)).replace(hour=9, minute=0)),
        ("tomorrow", (NOW + timedelta(days=1)).replace(hour=9, minute=0)),
        ("tonight", NOW.replace(hour=20, minute=0)),
        ("on friday at noon", (NOW + timedelta(days=4)).replace(hour=12, minute=0)),
        ("at half past six", NOW.replace(hour=18, minute=30)),
        ("at quarter to seven", NOW.replace(hour=18, minute=45)),
        ("at ten past three", NOW.replace(hour=15, minute=10)),
        ("at midnight", (NOW + timedelta(days=1)).replace(hour=0, minute=0)),
    ],
)
def test_reminder_times_are_read_relative_to_now(said, due):
    assert parse_when(said, NOW) == due.replace(second=0, microsecond=0)


@pytest.mark.parametrize(("said", "why"), [("yesterday", "passed"), ("sometime", "didn't catch"), ("", "When")])
def test_reminder_times_that_cannot_be_used_say_why(said, why):
    with pytest.raises(WhenError, match=why):
        parse_when(said, NOW)


def test_a_reminder_time_is_said_relative_to_today():
    assert say_when(NOW.replace(hour=18, minute=0), NOW) == "at six o'clock in the evening"
    assert say_when(NOW + timedelta(days=1), NOW) == "tomorrow at ten past two in the afternoon"
    assert say_when(NOW + timedelta(days=3), NOW).startswith("on Thursday at")
