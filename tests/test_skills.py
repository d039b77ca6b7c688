"""The skills behind Home Assistant's intent parser (hassil, home-assistant-intents) and voiceos' own templates: what
is understood, what is answered, what it changes and when, and what is left to the LM. Real hassil and sentences,
a fixed clock (Monday 7 December 2026, 14:10)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from voiceos.alarms import ReminderBook, TimerBoard
from voiceos.clock import FixedClock
from voiceos.config import SkillOptions
from voiceos.errors import ConfigError
from voiceos.memory import MemoryStore
from voiceos.skills import AlarmControl, SkillContext, SkillReply, SkillResponder
from voiceos.skills.responder import SKILL_FAILED

NOW = datetime(2026, 12, 7, 14, 10).astimezone()


@pytest.fixture(scope="module")
def responder():
    skills = SkillResponder(SkillOptions())
    skills.warm()
    return skills


@pytest.fixture
def context():
    clock = FixedClock(NOW)
    return SkillContext(
        clock,
        SkillOptions(),
        MemoryStore(None),
        timers=TimerBoard(clock, max_timers=3, max_seconds=24 * 3600),
        reminders=ReminderBook(clock),
        last_reply="The sky is blue.",
    )


def turn(responder: SkillResponder, context: SkillContext, text: str) -> SkillReply | None:
    """One turn that stands: the reply, its action done, its question kept."""
    reply = responder.answer(text, context)
    if reply is not None and reply.action is not None:
        reply.action()
    responder.settle(reply)
    return reply


@pytest.mark.parametrize(
    ("said", "intent", "answer"),
    [
        ("What time is it?", "HassGetCurrentTime", "It's ten past two in the afternoon."),
        ("what's the time", "HassGetCurrentTime", "It's ten past two in the afternoon."),
        ("What's today's date?", "HassGetCurrentDate", "Today is Monday the seventh of December."),
        ("what day is it today", "VoiceosGetDay", "Today is Monday the seventh of December."),
        ("which day is today", "VoiceosGetDay", "Today is Monday the seventh of December."),
        ("What day is it to-day?", "VoiceosGetDay", "Today is Monday the seventh of December."),
        ("is it friday", "VoiceosGetDay", "No, today is Monday."),
        ("what year is it", "VoiceosGetDay", "It's twenty twenty-six."),
        ("what month is it", "VoiceosGetDay", "It's December."),
        ("what time is it in Tokyo", "VoiceosGetDay", "I only know the time here"),
        ("Set a timer for 45 seconds.", "HassStartTimer", "Timer set for forty-five seconds."),
        ("start a five minute timer", "HassStartTimer", "Timer set for five minutes."),
        ("set a timer for twenty five minutes", "HassStartTimer", "Timer set for twenty-five minutes."),
        ("set a timer for an hour and a half", "HassStartTimer", "Timer set for one hour and thirty minutes."),
        ("set a pasta timer for 10 minutes", "HassStartTimer", "Pasta timer set for ten minutes."),
        ("What is 17 times 23?", "VoiceosCalculate", "Seventeen times twenty-three is three hundred ninety-one."),
        ("what's 15 percent of 80", "VoiceosCalculate", "is twelve"),
        ("how much is 100 divided by 7", "VoiceosCalculate", "is about fourteen point two nine"),
        ("what is 10 divided by 0", "VoiceosCalculate", "I can't divide by zero."),
        ("How many minutes are in three hours?", "VoiceosConvertUnits", "There are one hundred eighty minutes"),
        ("convert five miles to kilometers", "VoiceosConvertUnits", "about eight point zero five kilometres"),
        ("what is 100 degrees fahrenheit in celsius", "VoiceosConvertUnits", "thirty-seven point seven eight"),
        ("what's the news today", "VoiceosGetNews", "without the internet"),
        ("what's the weather like", "HassGetWeather", "without the internet"),
        ("say that again", "VoiceosRepeat", "The sky is blue."),
        ("never mind", "HassNevermind", ""),
        ("be quiet", "VoiceosStop", ""),
    ],
)
def test_requests_are_understood_and_answered(responder, context, said, intent, answer):
    reply = responder.answer(said, context)
    assert reply is not None, said
    assert reply.intent == intent
    assert answer in reply.speech if answer else reply.speech == ""


@pytest.mark.parametrize(
    "said",
    [
        "It's raining outside.",
        "I need to buy milk on the way home.",
        "What is the capital of France?",
        "What is your name?",
        "what is love",
        "How are you today?",
        "Tell me a story about a dragon.",
        "I forgot my keys again.",
        "My mother called me this morning.",
        "I stopped smoking last year.",
        "Time flies when you're having fun.",
        "Can you remind me what we talked about?",
        "What do you think about cats?",
        "I set the table for dinner.",
    ],
)
def test_remarks_and_questions_about_the_world_are_left_to_the_lm(responder, context, said):
    assert responder.answer(said, context) is None


def test_an_answer_changes_nothing_until_the_turn_stands(responder, context):
    reply = responder.answer("set a timer for five minutes", context)
    assert reply is not None and reply.action is not None
    assert context.timers.timers == []  # a speculative reply dropped here would leave no timer
    reply.action()
    assert [t.seconds for t in context.timers.timers] == [300]


def test_timers_are_listed_paused_extended_and_cancelled(responder, context):
    turn(responder, context, "set a pasta timer for 10 minutes")
    context.clock.advance(60)
    assert turn(responder, context, "how much time is left on my timer").speech == (
        "Your pasta timer has nine minutes left."
    )
    assert turn(responder, context, "pause the timer").speech == "Pasta timer paused."
    assert context.timers.timers[0].paused
    assert turn(responder, context, "resume the timer").speech == "Pasta timer resumed."
    assert "fourteen minutes left" in turn(responder, context, "add 5 minutes to my timer").speech
    turn(responder, context, "set a timer for 45 seconds")
    assert "Which one?" in turn(responder, context, "cancel the timer").speech
    assert turn(responder, context, "cancel the pasta timer").speech == "Pasta timer cancelled."
    assert [t.seconds for t in context.timers.timers] == [45]
    assert turn(responder, context, "cancel all timers").speech == "Timer cancelled."
    assert turn(responder, context, "what timers do I have").speech == "You have no timers running."


def test_a_timer_without_a_length_asks_for_it_and_takes_the_answer(responder, context):
    assert turn(responder, context, "set a timer").speech == "For how long?"
    assert turn(responder, context, "ten minutes").speech == "Timer set for ten minutes."
    assert [t.seconds for t in context.timers.timers] == [600]
    assert turn(responder, context, "ten minutes") is None  # the question was answered: no longer pending


def test_a_question_not_answered_is_forgotten(responder, context):
    turn(responder, context, "set a timer")
    assert turn(responder, context, "what is the capital of France") is None
    assert turn(responder, context, "five minutes") is None and context.timers.timers == []


@pytest.mark.parametrize(
    ("said", "why"),
    [
        ("set a timer for minus five minutes", "negative"),
        ("set a timer for 900 hours", "up to twenty-four hours"),
        ("set a timer for blah", "how long"),
        ("remind me to call John yesterday", "already passed"),
        ("remind me to call John at teatime", "didn't catch the time"),
    ],
)
def test_bad_requests_are_answered_with_the_reason_and_set_nothing(responder, context, said, why):
    reply = turn(responder, context, said)
    assert reply is not None and why in reply.speech
    assert reply.action is None
    assert context.timers.timers == [] and context.reminders.reminders == []


def test_no_more_timers_than_allowed(responder, context):
    for minutes in (1, 2, 3):
        turn(responder, context, f"set a timer for {minutes} minutes")
    reply = turn(responder, context, "set a timer for 4 minutes")
    assert "You already have three timers" in reply.speech and len(context.timers.timers) == 3


def test_without_a_daemon_timers_and_reminders_say_how_to_start_one(responder, context):
    context.timers = context.reminders = None
    for said in ("set a timer for 3 seconds", "remind me to call mum at 6 pm"):
        reply = responder.answer(said, context)
        assert "voiceos run" in reply.speech and reply.action is None


@pytest.mark.parametrize(
    ("said", "task", "due"),
    [
        ("Remind me to call my mother at 6 pm.", "call your mother", NOW.replace(hour=18, minute=0)),
        ("remind me in 20 minutes to take the pizza out", "take the pizza out", NOW + timedelta(minutes=20)),
        ("remind me to look at the stars at 9 pm", "look at the stars", NOW.replace(hour=21, minute=0)),
        (
            "remind me tomorrow at 9 to water the plants",
            "water the plants",
            (NOW + timedelta(days=1)).replace(hour=9, minute=0),
        ),
        ("set a reminder for 7 pm to feed the cat", "feed the cat", NOW.replace(hour=19, minute=0)),
    ],
)
def test_reminders_are_set_for_the_time_said(responder, context, said, task, due):
    reply = turn(responder, context, said)
    assert reply.intent == "VoiceosSetReminder" and reply.speech.startswith(f"Okay, I'll remind you to {task}")
    [reminder] = context.reminders.reminders
    assert (reminder.task, reminder.due) == (task, due)


def test_a_reminder_without_a_time_asks_when(responder, context):
    assert turn(responder, context, "remind me to buy milk").speech == "When should I remind you?"
    reply = turn(responder, context, "at 5 pm")
    assert reply.speech == "Okay, I'll remind you to buy milk at five o'clock in the afternoon."
    assert [r.task for r in context.reminders.reminders] == ["buy milk"]


def test_reminders_are_listed_and_cancelled(responder, context):
    turn(responder, context, "remind me to call my mother at 6 pm")
    turn(responder, context, "remind me to feed the cat at 7 pm")
    listed = turn(responder, context, "what are my reminders").speech
    assert listed.startswith("You have two reminders: to call your mother at six") and "feed the cat" in listed
    assert turn(responder, context, "cancel my reminder to call my mother").speech == (
        "Cancelled the reminder to call your mother."
    )
    assert [r.task for r in context.reminders.reminders] == ["feed the cat"]


def test_what_it_knows_is_told_and_forgotten_on_request(responder, context):
    context.memory.learn("My name is Sam and I have a dog called Rex.")
    reply = turn(responder, context, "what do you know about me")
    assert reply.speech == "You told me that your name is Sam and you have a dog called Rex."
    assert not reply.learn
    assert turn(responder, context, "forget that I have a dog").speech == (
        "Okay, I've forgotten that you have a dog called Rex."
    )
    assert [f.key for f in context.memory.facts] == ["name"]
    assert turn(responder, context, "forget about my sister").speech == "I don't know anything about that."
    assert turn(responder, context, "forget everything you know about me").action is not None
    assert context.memory.facts == []


def test_stop_silences_a_ringing_alarm(responder, context):
    silenced = []
    context.alarms = AlarmControl(ringing=lambda: True, silence=lambda: silenced.append(True))
    assert turn(responder, context, "stop").speech == ""
    assert turn(responder, context, "stop the timer").speech == ""  # no timer runs: the one ringing is meant
    assert silenced == [True, True]


def test_a_skill_that_fails_is_answered_with_an_apology_and_the_next_turn_works(context):
    class Broken:
        intents = ("HassGetCurrentTime",)

        def handle(self, matches, context):
            raise RuntimeError("boom")

    responder = SkillResponder(SkillOptions(), skills=[Broken()])
    assert responder.answer("what time is it", context) == SkillReply(SKILL_FAILED, "HassGetCurrentTime")
    assert responder.answer("what is the capital of France", context) is None


def test_your_own_sentences_add_to_the_built_in_ones(tmp_path, context):
    extra = tmp_path / "mine.yaml"
    extra.write_text(
        'language: en\nintents:\n  HassGetCurrentTime:\n    data:\n      - sentences:\n          - "how late is it"\n'
    )
    responder = SkillResponder(SkillOptions(sentences=str(extra)))
    assert responder.answer("how late is it", context).speech == "It's ten past two in the afternoon."
    assert responder.answer("what time is it", context).intent == "HassGetCurrentTime"


def test_a_broken_sentences_file_is_a_one_line_config_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("intents: [oops")
    with pytest.raises(ConfigError, match=r"skills\.sentences"):
        SkillResponder(SkillOptions(sentences=str(bad)))
    with pytest.raises(ConfigError, match=r"skills\.sentences"):
        SkillResponder(SkillOptions(sentences=str(tmp_path / "missing.yaml")))
