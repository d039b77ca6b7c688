"""The reply-emotion policy: which voice table and which context note a detected user emotion leads to."""

from __future__ import annotations

import re

import pytest

from voiceos.config import EmotionOptions, EmotionPolicy, config_from_dict
from voiceos.emotion.labels import LABELS, EmotionResult
from voiceos.emotion.policy import reply_style
from voiceos.errors import ConfigError


def _result(label: str, confidence: float) -> EmotionResult:
    rest = (1.0 - confidence) / (len(LABELS) - 1)
    return EmotionResult(label, {name: confidence if name == label else rest for name in LABELS})


@pytest.mark.parametrize(
    ("label", "voice"),
    [("sadness", "gentle"), ("anger", "calm"), ("joy", "joyful"), ("fear", "reassuring"), ("neutral", "neutral")],
)
def test_default_policy_maps_user_emotion_to_voice(label, voice):
    assert reply_style(_result(label, 0.9), EmotionOptions()).voice_emotion == voice


def test_confident_emotion_adds_a_note_naming_the_feeling():
    style = reply_style(_result("sadness", 0.8), EmotionOptions())
    assert style.note is not None and "sad" in style.note


def test_unsure_detection_counts_as_neutral():
    style = reply_style(_result("anger", 0.3), EmotionOptions(min_confidence=0.45))
    assert style == reply_style(_result("neutral", 0.9), EmotionOptions())
    assert style.note is None


def test_neutral_and_empty_note_add_nothing_to_the_context():
    assert reply_style(_result("neutral", 0.99), EmotionOptions()).note is None
    assert reply_style(_result("surprise", 0.99), EmotionOptions()) == reply_style(
        _result("neutral", 0.9), EmotionOptions()
    )
    assert reply_style(_result("sadness", 0.99), EmotionOptions(context_note="")).note is None
    assert reply_style(_result("joy", 0.99), EmotionOptions()).note is None  # not in note_for by default
    assert reply_style(_result("joy", 0.99), EmotionOptions(note_for="joy")).note is not None


def test_policy_is_configurable_from_yaml():
    config = config_from_dict({"emotion": {"policy": {"sadness": "calm"}, "min_confidence": 0.6}})
    assert config.emotion.policy == EmotionPolicy(sadness="calm")
    assert reply_style(_result("sadness", 0.7), config.emotion).voice_emotion == "calm"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"emotion": {"policy": {"boredom": "calm"}}}, "unknown key 'emotion.policy.boredom'"),
        ({"emotion": {"min_confidence": 2}}, "'emotion.min_confidence' must be between"),
        ({"emotion": {"context_note": "The user is {mood}."}}, "placeholder {feeling}"),
        ({"emotion": {"enabled": "yes"}}, "'emotion.enabled' must be true or false"),
        ({"emotion": {"note_for": "sadness boredom"}}, "note_for names unknown emotions ['boredom']"),
    ],
)
def test_bad_emotion_config_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict(data)
