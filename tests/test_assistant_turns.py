"""The assistant's turn policy with the real models and no sound devices: an utterance ending while a `say` reply is
still being written cuts it; if the utterance had no words (a cough, a leak of the assistant's own echo) the reply is
answered after all. The utterance is handed to the assistant as the VAD would (a SpeechEnded event)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.config import WakeOptions
from voiceos.daemon.assistant import Assistant
from voiceos.daemon.bus import EventBus
from voiceos.vad import SpeechEnded, SpeechStarted, Utterance

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"
QUESTION = "Tell me a long story about a lighthouse keeper and his cat."


def _hiss() -> np.ndarray:
    return (0.01 * np.random.default_rng(3).standard_normal(SAMPLE_RATE)).astype(np.float32)


async def _say_cut_by(pipeline, samples: np.ndarray) -> tuple[dict, Assistant]:
    """`say` QUESTION; while its reply is being written (nothing played), an utterance of ``samples`` ends."""
    pipeline.config = dataclasses.replace(pipeline.config, wake=WakeOptions(mode="always"))  # (it never says the name)
    assistant = Assistant(pipeline, EventBus())
    say = asyncio.ensure_future(assistant.say(QUESTION))
    while assistant.state != "thinking":
        await asyncio.sleep(0.002)
    utterance = Utterance(10.0, 10.0 + len(samples) / SAMPLE_RATE, samples, voiced_s=len(samples) / SAMPLE_RATE)
    assistant.on_speech([SpeechStarted(10.0), SpeechEnded(utterance)], utterance.voiced_s)
    result = await asyncio.wait_for(say, 120)
    return result, assistant


def test_a_say_reply_cut_by_an_utterance_without_words_is_answered_after_all(pipeline, transcriber, caplog):
    assert transcriber.transcribe(_hiss()).text.strip() == ""  # Whisper hears no words in it

    async def main():
        result, assistant = await _say_cut_by(pipeline, _hiss())
        await assistant.close()
        return result

    with caplog.at_level("INFO", logger="voiceos.daemon.assistant"):
        result = asyncio.run(main())
    assert "turn interrupted (a new utterance)" in caplog.text  # it was cut ...
    assert "had no words: answering it after all" in caplog.text  # ... and answered again
    assert result["interrupted"] is False and result["reply"].strip()
    assert [m["content"] for m in pipeline.history if m["role"] == "user"] == [QUESTION]


def test_a_say_reply_cut_by_words_stays_cut_and_the_words_are_answered(pipeline, caplog):
    words = read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav", SAMPLE_RATE)

    async def main():
        result, assistant = await _say_cut_by(pipeline, words)
        answer = assistant._turn_task
        if answer is not None:
            await asyncio.wait_for(answer, 120)
        await assistant.close()
        return result

    with caplog.at_level("INFO", logger="voiceos.daemon.assistant"):
        result = asyncio.run(main())
    assert result["interrupted"] is True and result["interrupted_by"] == "a new utterance"
    assert "answering it after all" not in caplog.text
    users = [m["content"] for m in pipeline.history if m["role"] == "user"]
    assert len(users) == 1 and "amiable" in users[0].lower(), users
