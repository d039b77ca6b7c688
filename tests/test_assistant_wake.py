"""The name gate in the assistant (wake.mode: name), over fake stages (tests/fakes.py): what is not addressed to it is
transcribed, then dropped without a trace but an ``ignored`` event; what is, is answered without the name; follow-ups
need no name; the name alone gets "Yes?". Milliseconds per test; tests/test_daemon_wake.py runs it live."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from fakes import FakeLM, FakeTranscriber, FakeTts, speech

from voiceos.config import WakeOptions
from voiceos.daemon.assistant import ACKNOWLEDGE, Assistant
from voiceos.daemon.bus import EventBus
from voiceos.pipeline import Pipeline
from voiceos.vad import SpeechEnded, SpeechGrowing, SpeechStarted, Utterance

LINES = {
    16_000: "so we went to the market",  # 1.0 s: talk in the room
    24_000: "Milo, what time is it in Lisbon?",  # 1.5 s: addressed
    32_000: "and what about Porto?",  # 2.0 s: a follow-up without the name
    8_000: "Milo?",  # 0.5 s: the name alone
}


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def room(test_config, device_plan):
    config = dataclasses.replace(test_config, wake=WakeOptions(mode="name"))
    lm = FakeLM("It is noon there.")
    pipeline = Pipeline(config, device_plan, transcriber=FakeTranscriber(LINES), lm=lm, tts=FakeTts())
    return pipeline, lm


async def _hear(assistant: Assistant, seconds: float, at: float) -> dict | None:
    utterance = Utterance(at, at + seconds, speech(seconds), voiced_s=seconds)
    assistant.on_speech([SpeechStarted(at), SpeechEnded(utterance)], seconds)
    await asyncio.sleep(0)
    task = assistant.controller.turn.task if assistant.controller.turn else None
    return await asyncio.wait_for(task, 10) if task is not None else None


def test_talk_not_for_the_assistant_leaves_only_an_ignored_event(room):
    pipeline, lm = room

    async def main():
        bus = EventBus()
        events = bus.subscribe()
        assistant = Assistant(pipeline, bus)
        result = await _hear(assistant, 1.0, 1.0)
        await assistant.close()
        names = []
        while (event := events.get_nowait()) is not None:
            names.append(event)
        return result, names

    result, events = asyncio.run(main())
    assert result is None and lm.asked == [] and pipeline.history == []
    ignored = [e for e in events if e.name == "ignored"]
    assert len(ignored) == 1 and ignored[0].seconds == 1.0
    assert not [e for e in events if e.name in ("transcript", "reply_delta", "speaking_started")]
    assert "market" not in repr(events)  # what was said is never published


def test_the_request_after_the_name_is_answered_without_it_and_follow_ups_need_no_name(room):
    pipeline, lm = room
    clock = Clock()

    async def main():
        assistant = Assistant(pipeline, EventBus(), clock=clock)
        first = await _hear(assistant, 1.5, 1.0)
        clock.now += 5.0
        follow_up = await _hear(assistant, 2.0, 10.0)
        clock.now += 20.0  # long after it spoke
        late = await _hear(assistant, 2.0, 40.0)
        await assistant.close()
        return first, follow_up, late

    first, follow_up, late = asyncio.run(main())
    assert lm.asked == ["What time is it in Lisbon?", "and what about Porto?"]
    assert first["input"] == "What time is it in Lisbon?" and follow_up["reply"] == lm.reply
    assert late is None


def test_the_name_alone_is_answered_with_a_question(room):
    pipeline, lm = room

    async def main():
        assistant = Assistant(pipeline, EventBus())
        result = await _hear(assistant, 0.5, 1.0)
        await assistant.close()
        return result

    result = asyncio.run(main())
    assert result["reply"] == ACKNOWLEDGE and lm.asked == [] and pipeline.history == []


def _published(events) -> list:
    found = []
    while (event := events.get_nowait()) is not None:
        found.append(event)
    return found


async def _grow(assistant: Assistant, seconds: float, at: float) -> None:
    """The user is still talking: ``seconds`` of an utterance begun at ``at`` so far (asr.partial_ms), its partial
    transcript finished on the model thread and its news on the loop."""
    so_far = Utterance(at, at + seconds, speech(seconds), voiced_s=seconds)
    assistant.on_speech([SpeechStarted(at), SpeechGrowing(so_far)], seconds)
    await asyncio.get_running_loop().run_in_executor(assistant._models, lambda: None)  # (one model thread, in order)
    for _ in range(3):
        await asyncio.sleep(0)


def test_words_so_far_of_an_utterance_that_may_not_be_for_it_are_never_published(room):
    """With the name rule the name may come last ("What's the time, Milo?"): until the utterance ends it may turn out
    not to be for the assistant, so its partial transcripts stay in memory, unpublished."""
    pipeline, lm = room

    async def main():
        bus = EventBus()
        events = bus.subscribe()
        assistant = Assistant(pipeline, bus)
        await _grow(assistant, 1.0, 1.0)  # "so we went to the market", so far
        growing = _published(events)
        utterance = Utterance(1.0, 2.0, speech(1.0), voiced_s=1.0)
        assistant.on_speech([SpeechEnded(utterance)], 1.0)
        await asyncio.sleep(0)
        if assistant.controller.turn is not None and assistant.controller.turn.task is not None:
            await asyncio.wait_for(assistant.controller.turn.task, 10)
        ended = _published(events)
        await assistant.close()
        return growing, ended

    growing, ended = asyncio.run(main())
    assert pipeline.transcriber.calls[0] == 16_000  # it was transcribed as it grew, in memory
    assert not [e for e in growing + ended if e.name == "partial_transcript"]
    assert "market" not in repr(growing + ended) and [e.name for e in ended if e.name == "ignored"] == ["ignored"]
    assert lm.asked == [] and pipeline.history == []


def test_words_so_far_are_published_in_a_follow_up_and_when_it_answers_everything(room, test_config, device_plan):
    pipeline, _ = room
    clock = Clock()

    async def follow_up():
        bus = EventBus()
        events = bus.subscribe()
        assistant = Assistant(pipeline, bus, clock=clock)
        await _hear(assistant, 1.5, 1.0)  # "Milo, what time is it in Lisbon?": answered, a follow-up may come
        _published(events)
        clock.now += 5.0
        await _grow(assistant, 1.0, 10.0)
        partials = [e for e in _published(events) if e.name == "partial_transcript"]
        await assistant.close()
        return partials

    partials = asyncio.run(follow_up())
    assert [(p.text, p.stream_s) for p in partials] == [("so we went to the market", 11.0)]

    config = dataclasses.replace(test_config, wake=WakeOptions(mode="always"))
    always = Pipeline(config, device_plan, transcriber=FakeTranscriber(LINES), lm=FakeLM(), tts=FakeTts())

    async def answering_everything():
        bus = EventBus()
        events = bus.subscribe()
        assistant = Assistant(always, bus)
        await _grow(assistant, 1.0, 1.0)
        partials = [e for e in _published(events) if e.name == "partial_transcript"]
        await assistant.close()
        return partials

    assert [p.text for p in asyncio.run(answering_everything())] == ["so we went to the market"]
