"""Whether an utterance is for the assistant (voiceos.wake): its name in the transcript, where it may stand, the
request without it, and follow-ups without the name; pure logic on a stepped clock."""

from __future__ import annotations

import pytest

from voiceos.config import WakeOptions
from voiceos.wake import AlwaysStart, NameSpotter, NameStart, load_turn_start


@pytest.mark.parametrize(
    ("said", "asked"),
    [
        ("Milo, what time is it?", "What time is it?"),
        ("Hey Milo, what time is it?", "What time is it?"),
        ("okay Milo set a timer for five minutes", "Set a timer for five minutes"),
        ("What's the time, Milo?", "What's the time?"),
        ("Thanks, Milo.", "Thanks."),
        ("Mylo, what is the weather?", "What is the weather?"),  # as Whisper may write it
        ("Milo's there? Are you there?", "There? Are you there?"),
        ("Milo.", ""),  # the name alone
    ],
)
def test_the_name_at_the_start_or_the_end_addresses_the_assistant(said, asked):
    spotted = NameSpotter(["Milo"]).spot(said)
    assert spotted is not None and spotted.request == asked


@pytest.mark.parametrize(
    "said",
    [
        "I told Milo about it yesterday and he laughed at me.",
        "What time is it?",
        "The mill opens at nine.",
        "",
    ],
)
def test_talk_without_the_name_at_its_place_is_not_for_the_assistant(said):
    assert NameSpotter(["Milo"]).spot(said) is None


def test_the_placement_rule_decides_where_the_name_may_stand():
    said = "Set a timer Milo for five minutes."
    assert NameSpotter(["Milo"], "start").spot("What's the time, Milo?") is None
    assert NameSpotter(["Milo"], "start_or_end").spot(said) is None
    assert NameSpotter(["Milo"], "anywhere").spot(said).request == "Set a timer for five minutes."


def test_several_names_and_lead_ins_are_taken_from_the_config():
    start = load_turn_start(WakeOptions(names="Milo, Robbie"), "Milo")
    assert start.accept("Robbie, tell me a joke.") == "Tell me a joke."
    assert start.how_to_talk() == "Listening. Say 'Milo, ...' to talk to me."
    assert load_turn_start(WakeOptions(), "Ada").accept("Hey Ada, hello") == "Hello"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_follow_ups_need_no_name_for_a_while_after_the_assistant_spoke():
    clock = Clock()
    start = NameStart(NameSpotter(["Milo"]), 8.0, call_name="Milo", clock=clock)
    assert start.accept("and tomorrow?") is None
    start.conversing()  # it spoke
    clock.now += 7.5
    assert start.accept("and tomorrow?") == "and tomorrow?"
    clock.now += 1.0  # 8.5 s after it spoke
    assert start.accept("and tomorrow?") is None
    assert start.accept("Milo, and tomorrow?") == "And tomorrow?"


def test_always_answers_everything():
    start = load_turn_start(WakeOptions(mode="always"), "Milo")
    assert isinstance(start, AlwaysStart) and start.accept("what time is it") == "what time is it"
