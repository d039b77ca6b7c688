"""The daemon's end-of-turn step (voiceos.daemon.turn_completion) as pure logic: a scripted strategy and transcript."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from types import SimpleNamespace

import numpy as np

from voiceos.daemon.turn_completion import TurnCompletion
from voiceos.turn import TurnVerdict
from voiceos.turn.text import sounds_unfinished
from voiceos.vad import SpeechEnded, TurnCheck, Utterance


class ScriptedStrategy:
    """Says ``complete`` for every pause, after ``release`` is set (so a test can hold a verdict back)."""

    name, check_ms, uses_words = "scripted", 200, True

    def __init__(self, complete: bool = True) -> None:
        self.complete = complete
        self.release = threading.Event()
        self.release.set()

    def verdict(self, audio: np.ndarray) -> TurnVerdict:
        self.release.wait(5)
        return TurnVerdict(self.complete, 0.95 if self.complete else 0.1, 1.0)

    def unfinished(self, transcript: str) -> bool:
        return sounds_unfinished(transcript)


def check(start: float, end: float) -> TurnCheck:
    utterance = Utterance(start, end, np.zeros(16, np.float32))
    return TurnCheck(utterance, np.zeros(32, np.float32))


def transcript(text: str) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(SimpleNamespace(text=text))
    return future


def run(strategy: ScriptedStrategy, steps) -> tuple[list, list, list]:
    """Drive a TurnCompletion; returns (the verdict events, the spans it ended, the events it handed on)."""
    published, ended, handed = [], [], []

    def end_turn(span):
        ended.append(span)
        return [SpeechEnded(Utterance(*span, np.zeros(16, np.float32)))]

    async def main():
        completion = TurnCompletion(strategy, published.append)
        await steps(completion, end_turn, handed.extend)
        await asyncio.sleep(0.05)
        completion.close()

    asyncio.run(main())
    return published, ended, handed


def test_a_complete_verdict_whose_words_are_whole_ends_the_turn_at_that_pause():
    async def steps(completion, end_turn, on_events):
        completion.check(check(0.0, 1.5), transcript("Ten of clubs."), end_turn, on_events)
        await asyncio.sleep(0.1)

    published, ended, handed = run(ScriptedStrategy(), steps)
    assert ended == [(0.0, 1.5)] and len(handed) == 1
    assert published[0].complete and published[0].ended_turn and not published[0].overruled_by_words


def test_words_that_stop_mid_phrase_overrule_the_verdict_and_the_turn_goes_on():
    async def steps(completion, end_turn, on_events):
        completion.check(check(0.0, 1.5), transcript("Four queen of"), end_turn, on_events)
        await asyncio.sleep(0.1)

    published, ended, handed = run(ScriptedStrategy(), steps)
    assert ended == [] and handed == []
    assert published[0].complete and published[0].overruled_by_words and not published[0].ended_turn


def test_an_incomplete_verdict_does_not_wait_for_the_words_and_ends_nothing():
    async def steps(completion, end_turn, on_events):
        completion.check(check(0.0, 1.5), concurrent.futures.Future(), end_turn, on_events)  # never transcribed
        await asyncio.sleep(0.1)

    published, ended, _ = run(ScriptedStrategy(complete=False), steps)
    assert ended == [] and len(published) == 1 and not published[0].complete


def test_a_verdict_that_arrives_after_a_newer_pause_is_dropped():
    strategy = ScriptedStrategy()

    async def steps(completion, end_turn, on_events):
        strategy.release.clear()
        completion.check(check(0.0, 1.5), transcript("Go forward."), end_turn, on_events)
        await asyncio.sleep(0.02)
        completion.check(check(0.0, 3.0), transcript("Go forward ten meters."), end_turn, on_events)
        strategy.release.set()
        await asyncio.sleep(0.1)

    published, ended, _ = run(strategy, steps)
    assert ended == [(0.0, 3.0)] and len(published) == 1  # only the newer pause was decided


def test_a_missing_transcript_leaves_the_verdict_to_stand_alone():
    """Speculation off (vad.speculate_ms: 0): no transcript to wait for; the sound alone decides."""

    async def steps(completion, end_turn, on_events):
        completion.check(check(0.0, 1.5), None, end_turn, on_events)
        await asyncio.sleep(0.1)

    _, ended, _ = run(ScriptedStrategy(), steps)
    assert ended == [(0.0, 1.5)]
