"""A 2-minute soak of the real daemon (voiceos.soak, the code of benchmarks/soak.py): speech and silence in turns."""

from __future__ import annotations

import signal
import time

import soundfile as sf

from voiceos.bench import DEFAULT_SPEECH
from voiceos.soak import MIC_RATE, Criteria, Soak, failures, heard_enough, load_clips, remove_logs, run_soak


def fake_result(**changes) -> dict:
    result = {
        "minutes_run": 10.0,
        "utterances_fed": 10,
        "utterances_answered": 10,
        "daemon_restarts": 0,
        "exit_status_on_sigterm": 0,
        "rss_mb": {"start": 1000.0, "end": 1050.0, "growth_pct": 5.0},
        "fds": {"start": 36, "end": 36},
        "threads": {"start": 22, "end": 23},
        "audio_faults": {"input_overflows": 0, "input_dropped_blocks": 2, "output_underflows_in_reply": 3},
        "log": {"errors": 0, "first_errors": []},
    }
    return {**result, **changes}


def test_the_soak_criteria_name_what_failed():
    assert failures(fake_result()) == []
    problems = failures(
        fake_result(
            utterances_answered=9,
            rss_mb={"start": 1000.0, "end": 1200.0, "growth_pct": 20.0},
            fds={"start": 36, "end": 50},
            audio_faults={"input_overflows": 11},
            log={"errors": 1, "first_errors": ["... ERROR voiceos: boom"]},
        )
    )
    assert len(problems) == 5, problems
    assert "1 of 10 utterances were not answered" in problems[0]
    assert "grew 20.0%" in problems[1] and "fds: 36 after warm-up, 50" in problems[2]
    assert "11 audio over/underflows (limit 10 in 10.0 min)" in problems[3] and "boom" in problems[4]
    strict = Criteria(max_audio_xruns_per_minute=0.2)
    assert failures(fake_result(audio_faults={"output_underflows_in_reply": 3}), strict)


def test_a_short_reply_counts_as_heard_by_its_share_of_loud_sound_and_silence_never_does():
    assert heard_enough(0.5, 3.0) and not heard_enough(0.2, 3.0)  # a long reply: 0.3 s of loud sound
    assert heard_enough(0.24, 0.9) and not heard_enough(0.1, 0.9)  # "Five?": a fifth of what it played
    assert not heard_enough(0.0, 0.0) and not heard_enough(0.0, 3.0)


def test_two_minutes_of_turns_are_all_answered_by_one_daemon_that_does_not_leak(xdg_cache_home):
    result = run_soak(2.0, warmup_turns=2, env={"XDG_CACHE_HOME": str(xdg_cache_home)})
    report = {k: v for k, v in result.items() if k not in ("turns", "rss_series_mb")}

    assert result["utterances_fed"] >= 4, report
    assert result["utterances_answered"] == result["utterances_fed"], result["unanswered"]
    assert result["reply_audio_s_p50"] > 0, report  # what the daemon says it played, for the reply-length figure
    assert result["daemon_restarts"] == 0 and result["exit_status_on_sigterm"] == 0, report
    assert result["daemon_uptime_s"] >= result["seconds_run"], report  # one process from start to end
    assert result["fds"]["end"] <= result["fds"]["start"] + 2, report
    assert result["threads"]["end"] <= result["threads"]["start"] + 2, report
    # 20%, not the soak's 10%: two minutes are still warm-up. In the 30-minute soaks the idle RSS stepped up ~8%
    # at the first long reply (turn 4) and ~3% more while the history filled dialogue.max_prompt_tokens (the LM's
    # KV cache and activations get bigger), then stayed flat for 40 turns; one sample also swings ~10% with what
    # the allocator kept of the last reply (growth_pct compares medians of 5 turns). A real leak still shows.
    assert result["rss_mb"]["growth_pct"] < 20.0, result["rss_series_mb"]
    assert result["log"]["errors"] == 0, result["log"]
    assert set(result["audio_faults"]) == {
        "input_overflows",
        "input_dropped_blocks",
        "output_underflows",
        "output_underflows_in_reply",
        "output_underruns",
    }
    remove_logs(result)  # kept (and named in the report) when an assertion fails


def test_a_sound_server_hiccup_shorter_than_a_stall_does_not_leave_the_daemon_deaf(xdg_cache_home, tmp_path):
    """Found by the soak on a loaded machine: the microphone paused for 0.5-1.5 s (too short to count as a lost
    device) and the daemon stopped hearing anything for good, spinning its event loop."""
    soak = Soak(tmp_path, {"XDG_CACHE_HOME": str(xdg_cache_home)}, None)
    clip = tmp_path / "clip.wav"
    sf.write(clip, load_clips(DEFAULT_SPEECH)[1][1], MIC_RATE, subtype="PCM_16")
    try:
        soak.start()
        assert soak.server._server is not None
        soak.server._server.send_signal(signal.SIGSTOP)  # no audio for a second, then it flows again
        time.sleep(1.0)
        soak.server._server.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        turn = soak.turn(clip.name, clip, 120.0)
        assert turn["answered"], (turn, soak.log_tail())
        assert soak.client.request("status")["devices"]["error"] is None
    finally:
        soak.stop()
