"""The barge-in policy: how much voice over a reply interrupts it (pure logic)."""

from __future__ import annotations

import pytest

from voiceos.daemon.interruption import MinSpeechInterruption


def test_the_reply_is_interrupted_once_enough_voice_was_heard_over_it() -> None:
    policy = MinSpeechInterruption[str](300)
    policy.started_over("reply")
    assert policy.due(0.09) is None and policy.due(0.27) is None
    assert policy.due(0.3) == "reply"
    assert policy.due(0.6) is None  # once per utterance
    assert policy.ended(2.0) is False  # it interrupted: the utterance is the user's next turn


def test_speech_over_the_reply_that_stays_short_is_dropped() -> None:
    policy = MinSpeechInterruption[str](300)
    policy.started_over("reply")
    assert policy.due(0.27) is None
    assert policy.ended(0.27) is True
    assert policy.ended(0.27) is False  # the next utterance did not begin over a reply


def test_speech_that_began_while_nothing_was_playing_is_never_dropped() -> None:
    policy = MinSpeechInterruption[str](300)
    assert policy.due(5.0) is None
    assert policy.ended(0.26) is False


def test_zero_interrupts_at_the_onset() -> None:
    policy = MinSpeechInterruption[str](0)
    policy.started_over("reply")
    assert policy.due(0.0) == "reply"


def test_a_negative_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="min_ms"):
        MinSpeechInterruption(-1)
