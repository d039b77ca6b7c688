"""A skill's answer is a turn like the LM's: the same speech path (sentences, the voice, timings), the same result
shape (with ``skill``), and its effects (a timer, facts learnt) only once the turn stands. Real models, real hassil;
`voiceos say` and `voiceos chat --jsonl` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

from voiceos.clock import FixedClock
from voiceos.config import SkillOptions
from voiceos.skills import SkillResponder
from voiceos.textnorm import word_error_rate

NOW = datetime(2026, 12, 7, 14, 10).astimezone()


@pytest.fixture(scope="session")
def skills():
    responder = SkillResponder(SkillOptions())
    responder.warm()
    return responder


@pytest.fixture
def assistant(pipeline, skills):
    """The pipeline as `voiceos chat` has it: the skills first, timers and reminders kept (in memory), a fixed clock."""
    from voiceos.alarms import ReminderBook, TimerBoard

    pipeline.skills = skills
    pipeline.clock = FixedClock(NOW)
    pipeline.timers = TimerBoard(pipeline.clock)
    pipeline.reminders = ReminderBook(pipeline.clock)
    yield pipeline
    pipeline.reset()


def test_a_skill_answer_is_spoken_without_asking_the_lm(assistant, transcriber):
    chunks = []
    turn = assistant.reply("What time is it?", on_audio=chunks.append)
    assert turn.skill == "HassGetCurrentTime" and turn.reply == "It's ten past two in the afternoon."
    assert "lm_first_token" not in turn.timings_ms and turn.timings_ms["tts_first_audio"] > 0
    assert turn.user_emotion["label"] == "neutral" and turn.reply_emotion == "neutral"
    assert sum(len(c) for c in chunks) == len(turn.audio) and turn.audio_seconds > 1.0
    heard = transcriber.transcribe(_at_16k(turn.audio, turn.sample_rate)).text
    assert word_error_rate(turn.reply, heard) <= 0.3, heard
    assert turn.as_json()["skill"] == "HassGetCurrentTime"
    assert assistant.history[-1] == {"role": "assistant", "content": turn.reply}


def test_what_no_skill_takes_goes_to_the_lm(assistant):
    turn = assistant.reply("What is the capital of France?")
    assert turn.skill is None and turn.timings_ms["lm_first_token"] > 0 and turn.reply


def test_a_timer_starts_when_its_confirmation_is_first_heard(assistant):
    timers_when_played = []

    def on_audio(chunk):
        timers_when_played.append(len(assistant.timers.timers))

    turn = assistant.reply("Set a timer for five minutes.", on_audio=on_audio)
    assert turn.reply == "Timer set for five minutes."
    assert timers_when_played[0] == 0  # handed out first (the daemon: it could still be dropped until played)...
    assert [t.seconds for t in assistant.timers.timers] == [300]  # ...then the timer runs


def test_a_dropped_turn_sets_nothing_and_learns_nothing(assistant):
    """The daemon's head start: a reply computed at a pause, dropped because the user went on talking."""
    turn = assistant.reply("My name is Maya. Set a timer for ten minutes.", decided=lambda: False)
    assert turn.skill == "HassStartTimer" or turn.skill is None
    assert assistant.timers.timers == [] and assistant.memory.facts == [] and turn.learnt == []
    kept = assistant.reply("My name is Maya. Set a timer for ten minutes.")
    assert [f.key for f in kept.learnt] == ["name"]


def test_the_facts_of_a_turn_are_known_to_its_own_reply_and_learnt_when_it_stands(assistant):
    turn = assistant.reply("Hi, I'm Sam. What do you know about me?")
    assert turn.skill == "VoiceosWhatDoYouKnow" or "Sam" in assistant.system_prompt()
    assert [f.text for f in assistant.memory.facts] == ["The user's name is Sam."]


def test_stop_says_nothing(assistant):
    turn = assistant.reply("Stop.")
    assert turn.skill == "VoiceosStop" and turn.reply == "" and len(turn.audio) == 0


def test_an_alarm_notice_is_a_chime_then_the_words_and_is_no_conversation_turn(assistant, transcriber):
    result = assistant.announce("Your five minute timer is done.")
    assert result.skill == "alarm" and result.reply == "Your five minute timer is done."
    chime_end = result.spans[0].end
    assert 0.3 < chime_end / result.sample_rate < 1.0  # the chime first
    heard = transcriber.transcribe(_at_16k(result.audio[chime_end:], result.sample_rate)).text
    assert word_error_rate(result.reply, heard) <= 0.3, heard
    assert assistant.history == [] and assistant.last_reply == result.reply


def test_say_without_a_daemon_says_timers_need_one(no_sound_env):
    out = subprocess.run(
        [sys.executable, "-m", "voiceos", "say", "--json", "--no-play", "set a timer for 3 seconds"],
        capture_output=True,
        text=True,
        env=no_sound_env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["skill"] == "HassStartTimer" and "voiceos run" in data["reply"], data
    assert data["audio"]["seconds"] > 1.0


def test_chat_jsonl_answers_requests_against_a_fixed_clock(no_sound_env):
    lines = [
        {"text": "What's the time?"},
        {"text": "Set a pasta timer for ten minutes."},
        {"text": "How much time is left on my timer?"},
        {"text": "What is 12 times 12?"},
        {"text": "remind me to call my sister tomorrow at 9"},
    ]
    out = subprocess.run(
        [sys.executable, "-m", "voiceos", "chat", "--jsonl", "--now", "2026-12-07T14:10"],
        input="\n".join(json.dumps(line) for line in lines) + "\n",
        capture_output=True,
        text=True,
        env={**no_sound_env, "XDG_DATA_HOME": str(no_sound_env["XDG_RUNTIME_DIR"])},
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    replies = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["skill"] for r in replies] == [
        "HassGetCurrentTime",
        "HassStartTimer",
        "HassTimerStatus",
        "VoiceosCalculate",
        "VoiceosSetReminder",
    ]
    assert [r["reply"] for r in replies[:4]] == [
        "It's ten past two in the afternoon.",
        "Pasta timer set for ten minutes.",
        "Your pasta timer has ten minutes left.",
        "Twelve times twelve is one hundred forty-four.",
    ]
    assert replies[4]["reply"] == "Okay, I'll remind you to call your sister tomorrow at nine o'clock in the morning."


def test_chat_refuses_a_bad_clock_in_one_line(no_sound_env):
    out = subprocess.run(
        [sys.executable, "-m", "voiceos", "chat", "--jsonl", "--now", "teatime"],
        input="",
        capture_output=True,
        text=True,
        env=no_sound_env,
        timeout=120,
    )
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "voiceos: error: --now 'teatime': give a local time like 2026-12-07T14:10"
    ]


def _at_16k(audio, rate):
    from voiceos.audio.files import resample

    return resample(audio, rate, 16000)
