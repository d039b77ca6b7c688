"""The assistant (voiceos.daemon.assistant) carrying out the turn controller's decisions, over fake stages
(tests/fakes.py) and no sound devices: the VAD's events are handed to it as the audio loop would. Milliseconds per
test; test_assistant_turns.py and test_daemon*.py run the same paths with the real models and devices."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest
from fakes import FakeLM, FakeTranscriber, FakeTts, speech

from voiceos.config import WakeOptions
from voiceos.daemon.assistant import Assistant
from voiceos.daemon.bus import EventBus
from voiceos.pipeline import Pipeline
from voiceos.vad import SpeechEnded, SpeechPaused, SpeechStarted, Utterance


def _utterance(start_s: float, seconds: float) -> Utterance:
    samples = speech(seconds)
    return Utterance(start_s, start_s + seconds, samples, voiced_s=seconds)


@pytest.fixture
def stages(test_config, device_plan):
    transcriber = FakeTranscriber({16_000: "so I was thinking", 24_000: "about a trip to Lisbon"})
    lm, tts = FakeLM(), FakeTts()
    config = dataclasses.replace(test_config, wake=WakeOptions(mode="always"))  # the fakes' words never say its name
    pipeline = Pipeline(config, device_plan, transcriber=transcriber, lm=lm, tts=tts)
    return pipeline, transcriber, lm


async def _turn_done(assistant: Assistant) -> dict | None:
    task = assistant._turn_task
    assert task is not None
    return await asyncio.wait_for(task, 10)


def test_the_end_of_an_utterance_is_answered_and_remembered(stages):
    pipeline, _, lm = stages

    async def main():
        assistant = Assistant(pipeline, EventBus())
        utt = _utterance(1.0, 1.0)
        assistant.on_speech([SpeechStarted(1.0), SpeechEnded(utt)], utt.voiced_s)
        result = await _turn_done(assistant)
        state = assistant.state
        await assistant.close()
        return result, state

    result, state = asyncio.run(main())
    assert lm.asked == ["so I was thinking"] and result["reply"] == lm.reply
    assert result["timings_ms"]["asr_speculative"] == 0.0  # no pause came before the end
    assert pipeline.history[-2:] == [
        {"role": "user", "content": "so I was thinking"},
        {"role": "assistant", "content": lm.reply},
    ]
    assert state == "no_audio"  # back from thinking (no microphone here)


def test_a_pause_that_ends_the_turn_commits_the_reply_already_written_on_it(stages):
    pipeline, transcriber, lm = stages

    async def main():
        assistant = Assistant(pipeline, EventBus())
        utt = _utterance(1.0, 1.0)
        assistant.on_speech([SpeechStarted(1.0), SpeechPaused(utt)], utt.voiced_s)
        await asyncio.sleep(0.2)  # the held reply runs meanwhile: transcribed, written, synthesized
        assert lm.asked == ["so I was thinking"] and pipeline.history == []  # ... but nothing is said yet
        assistant.on_speech([SpeechEnded(_utterance(1.0, 1.0))], utt.voiced_s)
        result = await _turn_done(assistant)
        await assistant.close()
        return result

    result = asyncio.run(main())
    assert transcriber.calls == [16_000] and lm.asked == ["so I was thinking"]  # once each: the head start's
    assert result["timings_ms"]["asr_speculative"] == 1.0 and "head_start" in result["timings_ms"]
    assert pipeline.history[-1] == {"role": "assistant", "content": lm.reply}


def test_speech_during_transcription_cuts_the_turn_and_its_words_join_the_next(stages):
    pipeline, transcriber, lm = stages
    transcriber.gate = threading.Event()

    async def main():
        assistant = Assistant(pipeline, EventBus())
        first, second = _utterance(1.0, 1.0), _utterance(2.5, 1.5)
        assistant.on_speech([SpeechStarted(1.0), SpeechEnded(first)], first.voiced_s)
        cut = assistant._turn_task
        assistant.on_speech([SpeechStarted(2.5)], 0.1)  # the user goes on while Whisper runs
        transcriber.gate.set()
        assert await asyncio.wait_for(cut, 10) is None  # cut: nothing answered
        assistant.on_speech([SpeechEnded(second)], second.voiced_s)
        result = await _turn_done(assistant)
        await assistant.close()
        return result

    result = asyncio.run(main())
    assert lm.asked == ["so I was thinking about a trip to Lisbon"]  # one turn, the words joined
    assert result["interrupted"] is False
    assert [m["content"] for m in pipeline.history if m["role"] == "user"] == [
        "so I was thinking about a trip to Lisbon"
    ]


def test_a_say_turn_cuts_a_turn_still_transcribing_and_keeps_its_words_for_the_next_utterance(stages):
    pipeline, transcriber, lm = stages
    transcriber.gate = threading.Event()

    async def main():
        assistant = Assistant(pipeline, EventBus())
        utt = _utterance(1.0, 1.0)
        assistant.on_speech([SpeechStarted(1.0), SpeechEnded(utt)], utt.voiced_s)
        mic_turn = assistant.controller.turn
        say = asyncio.ensure_future(assistant.say("Hello there."))
        await asyncio.sleep(0.05)
        assert mic_turn.interrupted_by == "a new turn"  # one turn at a time: the say waits for it to wind down
        transcriber.gate.set()
        said = await asyncio.wait_for(say, 10)
        carried = assistant.controller.carry_over
        await assistant.close()
        return said, carried

    said, carried = asyncio.run(main())
    assert lm.asked == ["Hello there."] and said["reply"] == lm.reply
    assert carried == "so I was thinking"  # the user's words wait for their next utterance


def test_a_new_conversation_resets_the_lm_through_its_protocol(stages):
    pipeline, _, lm = stages
    pipeline.history.append({"role": "user", "content": "hello"})
    pipeline.reset(forget_facts=False)
    assert lm.resets == 1 and pipeline.history == []
