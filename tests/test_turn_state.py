"""The held turn of a reply's head start (voiceos/daemon/turn_state.py): pure logic, threads and events."""

from __future__ import annotations

import threading
import time

from voiceos.daemon.turn_state import Turn


def held(max_hold_s: float = 30.0) -> Turn:
    return Turn.held("microphone", done=None, max_hold_s=max_hold_s)  # type: ignore[arg-type]


def test_a_held_turn_publishes_nothing_until_its_commit_then_everything_in_order() -> None:
    turn, out = held(), []
    turn.publish("transcript", out.append)
    turn.publish("delta 1", out.append)
    assert out == [] and turn.is_held
    turn.commit(out.append)
    turn.publish("delta 2", out.append)
    assert out == ["transcript", "delta 1", "delta 2"] and not turn.is_held


def test_an_ordinary_turn_publishes_at_once() -> None:
    turn, out = Turn("hi", "say"), []
    turn.publish("transcript", out.append)
    assert out == ["transcript"] and not turn.is_held and turn.wait_until_decided()


def test_the_model_thread_waits_for_the_commit_or_the_cancel() -> None:
    for decide, expected in (("commit", True), ("cancel", False)):
        turn, answers = held(), []
        waiter = threading.Thread(target=lambda t=turn, out=answers: out.append(t.wait_until_decided()))
        waiter.start()
        time.sleep(0.05)
        assert waiter.is_alive()  # still held
        if decide == "commit":
            turn.commit(lambda event: None)
        else:
            turn.cancel.set()
        waiter.join(1.0)
        assert answers == [expected]


def test_a_turn_held_too_long_cancels_itself() -> None:
    turn = held(max_hold_s=0.05)
    assert turn.wait_until_decided() is False
    assert turn.cancel.is_set()


def test_head_start_timings_count_from_the_commit() -> None:
    turn = held()
    turn.reply_started_at = 10.0
    turn.asr_done_at = 9.9  # Whisper was done before the turn ended
    turn.committed_at = 10.3  # the reply had run 300 ms by then
    timings = {"endpointing": 500.0, "asr": 150.0, "lm_first_token": 200.0, "tts_first_audio": 700.0, "total": 2000.0}
    shifted = {k: round(v, 6) for k, v in turn.head_start_timings(timings).items()}
    assert shifted == {
        "endpointing": 500.0,
        "asr": 0.0,
        "lm_first_token": 0.0,
        "tts_first_audio": 400.0,
        "total": 1700.0,
        "head_start": 300.0,
        "asr_ready": -400.0,  # the transcript was there 400 ms before the commit
    }
    assert Turn("hi", "say").head_start_timings(timings) == timings
