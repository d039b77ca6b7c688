"""The LM never states the time, the date, the weather or the news as fact when asked: the guard's two tests, and the
dialogue path with an LM that makes them up (a fake that answers with a fixed text: the guard is pure logic)."""

from __future__ import annotations

import pytest
from fakes import said_of

from voiceos.reply.honesty import CANNOT_CHECK, asks_about_now, states_now


@pytest.mark.parametrize(
    "said",
    ["Is it going to rain later?", "what hour is it", "How many days until my birthday?", "Who won the game?"],
)
def test_questions_about_now_are_recognised(said):
    assert asks_about_now(said)


@pytest.mark.parametrize(
    "said", ["It's raining outside.", "I love my dog.", "What is the capital of France?", "Tell me a joke."]
)
def test_other_words_are_not_questions_about_now(said):
    assert not asks_about_now(said)


@pytest.mark.parametrize(
    "sentence",
    [
        "It's 12:30am.",
        "It is 9 pm.",
        "It's ten o'clock.",
        "Today is Friday.",
        "We're in January.",
        "It's 20 degrees Celsius.",
        "It is going to rain today.",
        "Christmas is 20 days away.",
        "The election was held on December 17th, 2026.",
    ],
)
def test_made_up_times_dates_and_weather_are_recognised(sentence):
    assert states_now(sentence)


@pytest.mark.parametrize("sentence", ["I can't check that.", "That sounds lovely!", "The capital of France is Paris."])
def test_ordinary_sentences_are_not(sentence):
    assert not states_now(sentence)


def speak(reply: str, user_text: str) -> tuple[list[str], dict[str, int]]:
    return said_of(reply, user_text)


def test_a_made_up_time_is_not_said_and_the_reply_says_it_cannot_check():
    said, dropped = speak("It's 12:30am.", "How late is it now?")
    assert said == [CANNOT_CHECK] and dropped == {"invented_now": 1, "nothing_left": 1}


def test_only_the_made_up_sentence_goes():
    said, dropped = speak("It is going to rain today. Take care out there!", "Will it rain?")
    assert said == ["Take care out there!"] and dropped == {"invented_now": 1}


def test_a_date_in_a_reply_to_something_else_is_said():
    said, dropped = speak("See you on Friday!", "I'm going to my sister's place.")
    assert said == ["See you on Friday!"] and dropped == {}
