"""What is said of the LM's reply: the name guard says the user's name back to them when they asked for it, the
condolence guard drops condolences for a calm or happy turn, a reply is never empty, and `voiceos chat` shows exactly
what is said. The LM is a fake that answers with a fixed text (what
is said of a given reply is pure logic); the real model's replies are tested in test_chat.py."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from fakes import FakeLM, said_of

from voiceos.chat import _converse
from voiceos.config import Config
from voiceos.dialogue.persona import asks_own_name, told_back
from voiceos.emotion.labels import LABELS, EmotionResult
from voiceos.pipeline import Pipeline
from voiceos.reply.dialogue import NOTHING_LEFT


def speak(reply: str, user_text: str, name: str | None) -> tuple[list[str], dict[str, int]]:
    return said_of(reply, user_text, name)


@pytest.mark.parametrize("asked", ["What's my name?", "Do you know my name?", "Who am I?", "Remember my name?"])
def test_asked_their_name_the_users_name_claimed_in_the_first_person_is_said_to_them(asked):
    assert asks_own_name(asked)
    said, dropped = speak("I'm Sam. What can I do for you?", asked, "Sam")
    assert said == ["You're Sam.", "What can I do for you?"] and dropped == {"name": 1}


def test_a_claim_is_turned_to_the_user_whatever_its_form():
    assert told_back("My name is Sam, and I love walks.", "Sam") == "Your name is Sam, and I love walks."
    assert told_back("Yes! I am sam.", "Sam") == "Yes! You are Sam."
    assert told_back("Of course, call me Sam.", "Sam") == "Of course, you're Sam."


def test_not_asked_their_name_the_claim_is_not_said_and_the_rest_is():
    said, dropped = speak("I'm Sam. What can I do for you?", "Hi, I'm Sam. I just walked the dog.", "Sam")
    assert said == ["What can I do for you?"] and dropped == {"name": 1}
    assert not asks_own_name("My name is Sam.")


@pytest.mark.parametrize(
    ("reply", "dropped"), [("I'm Tom.", {"name": 1, "nothing_left": 1}), ("", {"nothing_left": 1})]
)
def test_a_reply_with_nothing_left_to_say_is_never_silent(reply, dropped):
    said, why = speak(reply, "Good to meet you.", "Tom")
    assert said == [NOTHING_LEFT] and why == dropped


def test_interactive_chat_shows_what_is_said_not_what_the_lm_wrote(device_plan, monkeypatch, capsys):
    pipeline = Pipeline(Config(), device_plan, lm=FakeLM("I'm Sam. What can I do for you?"))
    lines = iter(["Hi, I'm Sam. I just got back from a long walk.", "What's my name?"])

    def typed(_prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", typed)
    assert _converse(pipeline, None, threading.Lock()) == 0
    shown = capsys.readouterr().out.splitlines()
    said = [m["content"] for m in pipeline.history if m["role"] == "assistant"]
    assert said == ["What can I do for you?", "You're Sam. What can I do for you?"]
    assert shown == [f"milo> {said[0]}", f"milo> {said[1]}"]


def reading(label: str, p: float) -> EmotionResult:
    rest = (1 - p) / (len(LABELS) - 1)
    return EmotionResult(label, {name: p if name == label else rest for name in LABELS})


GUARDED = dataclasses.replace(Config(), emotion=dataclasses.replace(Config().emotion, condolence_guard=0.85))


@pytest.mark.parametrize("label", ["neutral", "joy"])
def test_a_condolence_is_not_said_when_the_head_is_sure_the_user_is_calm_or_happy(label):
    said, dropped = said_of(
        "Oh no! I'm sorry to hear that. Is the kettle new?",
        "The kettle is on.",
        None,
        emotion=reading(label, 0.9),
        config=GUARDED,
    )
    assert said == ["Is the kettle new?"] and dropped == {"condolence": 2}


@pytest.mark.parametrize(("label", "p"), [("neutral", 0.7), ("sadness", 0.9)])
def test_a_condolence_stays_when_the_head_hears_sorrow_or_is_unsure(label, p):
    said, dropped = said_of(
        "I'm so sorry for your loss.", "My aunt died.", None, emotion=reading(label, p), config=GUARDED
    )
    assert said == ["I'm so sorry for your loss."] and dropped == {}


OFF = dataclasses.replace(
    Config(), emotion=dataclasses.replace(Config().emotion, condolence_guard=0.0, celebration_guard=0.0)
)


def test_both_guards_are_on_by_default_and_off_at_zero():
    """0.8 by default: chosen on dev data (benchmarks/guard_thresholds.py), where the head reads 1% of bad news and
    4% of good news that sure of the other feelings."""
    assert (Config().emotion.condolence_guard, Config().emotion.celebration_guard) == (0.8, 0.8)
    calm = reading("neutral", 0.99)
    assert said_of("Oh no! That is awesome!", "The kettle is on.", None, emotion=calm, config=OFF)[0] == [
        "Oh no!",
        "That is awesome!",
    ]
    said, dropped = said_of("Oh no! That is awesome!", "The kettle is on.", None, emotion=calm)
    assert said == [NOTHING_LEFT] and dropped == {"condolence": 1, "celebration": 1, "nothing_left": 1}


CELEBRATION_GUARDED = dataclasses.replace(
    Config(), emotion=dataclasses.replace(Config().emotion, celebration_guard=0.8)
)


@pytest.mark.parametrize("label", ["neutral", "sadness"])
def test_a_celebration_is_not_said_when_the_head_is_sure_the_user_is_calm_or_upset(label):
    said, dropped = said_of(
        "That is awesome! How many eggs do you need?",
        "We need more eggs for the weekend.",
        None,
        emotion=reading(label, 0.9),
        config=CELEBRATION_GUARDED,
    )
    assert said == ["How many eggs do you need?"] and dropped == {"celebration": 1}


@pytest.mark.parametrize(("label", "p"), [("joy", 0.9), ("neutral", 0.7), ("surprise", 0.9)])
def test_a_celebration_stays_for_good_news_or_an_unsure_reading(label, p):
    said, dropped = said_of(
        "Congratulations! That's wonderful news.",
        "I passed my exam!",
        None,
        emotion=reading(label, p),
        config=CELEBRATION_GUARDED,
    )
    assert said == ["Congratulations!", "That's wonderful news."] and dropped == {}


def test_the_celebration_guard_leaves_plain_warmth_alone():
    from voiceos.reply.celebration import celebrates

    said, dropped = said_of("That sounds nice. Is it new?", "The kettle is on.", None, emotion=reading("neutral", 0.99))
    assert said == ["That sounds nice.", "Is it new?"] and dropped == {}
    assert not celebrates("That sounds nice. Is it a new kettle?") and not celebrates("Great, I'll remember that.")
