"""Speculative ASR bookkeeping (pure logic: a stand-in transcribe function on a real single-worker executor)."""

from __future__ import annotations

import concurrent.futures
import threading

import numpy as np

from voiceos.daemon.speculation import SpeculativeTranscription
from voiceos.vad import Utterance


def utterance(start_s: float, end_s: float) -> Utterance:
    samples = np.full(int((end_s - start_s) * 16000), start_s, dtype=np.float32)
    return Utterance(start_s, end_s, samples, end_s - start_s)


def test_the_utterance_ending_with_the_paused_samples_gets_their_transcript():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        speculation = SpeculativeTranscription(pool, lambda samples: len(samples))
        speculation.start(utterance(1.0, 2.0))
        future = speculation.claim(utterance(1.0, 2.0))
        assert future is not None and future.result() == 16000
        assert speculation.claim(utterance(1.0, 2.0)) is None  # claimed once


def test_an_utterance_that_went_on_after_the_pause_gets_nothing_and_the_stale_work_is_cancelled():
    gate = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(gate.wait)  # the model thread is busy: speculations queue behind it
        speculation = SpeculativeTranscription(pool, lambda samples: len(samples))
        speculation.start(utterance(1.0, 2.0))
        first = speculation._pending[1]
        speculation.start(utterance(1.0, 3.0))  # paused again later: the first one is superseded
        assert first.cancelled()
        second = speculation._pending[1]
        assert speculation.claim(utterance(1.0, 4.0)) is None  # ended with more samples than either pause
        assert second.cancelled()
        gate.set()


def test_drop_forgets_the_speculation():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        speculation = SpeculativeTranscription(pool, lambda samples: len(samples))
        speculation.start(utterance(0.0, 1.0))
        speculation.drop()
        assert speculation.claim(utterance(0.0, 1.0)) is None


def test_partials_take_the_quick_pass_and_the_pause_the_full_one():
    heard, passes = [], []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        speculation = SpeculativeTranscription(
            pool,
            lambda samples: passes.append("full") or len(samples),
            lambda u, t: heard.append((u.end_s, t)),
            lambda samples: passes.append("quick") or len(samples),
        )
        first = speculation.grow(utterance(1.0, 1.5))
        assert first is not None and first.result() == 8000
        partial = speculation.grow(utterance(1.0, 2.0))
        assert partial is not None and partial.result() == 16000
        assert speculation.start(utterance(1.0, 2.0)).result() == 16000
        assert speculation.partials == 2 and passes == ["quick", "quick", "full"]
        assert heard == [(1.5, 8000), (2.0, 16000)]


def test_a_partial_is_skipped_while_one_runs_and_forgotten_when_the_utterance_ends():
    gate = threading.Event()
    heard = []
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        speculation = SpeculativeTranscription(pool, lambda s: gate.wait() and len(s), lambda u, t: heard.append(t))
        running = speculation.grow(utterance(1.0, 1.5))
        assert speculation.grow(utterance(1.0, 2.0)) is None  # one at a time: this growth is skipped
        speculation.end_utterance()  # the utterance ended before the partial did: no news comes of it
        gate.set()
        assert running is not None and running.result() == 8000
    assert heard == []
