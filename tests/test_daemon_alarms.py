"""Timers that really ring: `voiceos run` live on the virtual microphone and speaker, a spoken request, the chime and
the notice arriving on the speaker when the timer is done, "stop" ending the ringing, and a notice that waits for
the turn in progress. Timing is judged loosely (the machine is noisy); what was said is transcribed back.

The requests are spoken by the Piper voice: the real recordings in ../shared/data/speech never say "set", "timer",
"seconds" or "stop" (the other daemon tests speak those recordings).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from daemon_process import running_daemon

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import resample
from voiceos.textnorm import word_error_rate

SPEAKER_RATE = 48000
RING_TIMES, RING_INTERVAL_S = 2, 2.0


@pytest.fixture(scope="module")
def daemon(pulse_server, xdg_cache_home, tmp_path_factory):
    directory = tmp_path_factory.mktemp("alarms")
    config = directory / "config.yaml"
    config.write_text(
        f"turn:\n  end_of_turn: silence\nskills:\n  ring_times: {RING_TIMES}\n  ring_interval_s: {RING_INTERVAL_S}\n"
    )
    with running_daemon(pulse_server, xdg_cache_home, directory, config) as proc:
        yield proc


@pytest.fixture(scope="module")
def spoken(seeded_tts):
    """A sentence as the user says it into the microphone: 16 kHz, with silence around it."""
    voice = seeded_tts(7)

    def say(text: str) -> np.ndarray:
        audio = resample(voice.synthesize_all(text), voice.sample_rate, SAMPLE_RATE)
        quiet = np.zeros(int(0.3 * SAMPLE_RATE), np.float32)
        return np.concatenate([quiet, audio, quiet, quiet])

    return say


def heard(transcriber, recording: np.ndarray, start_s: float, end_s: float | None = None) -> str:
    part = recording[int(start_s * SPEAKER_RATE) : None if end_s is None else int(end_s * SPEAKER_RATE)]
    return transcriber.transcribe(resample(part, SPEAKER_RATE, SAMPLE_RATE)).text


def tone_level(recording: np.ndarray, start_s: float, hz: float, seconds: float = 0.2) -> float:
    """How much of the window's energy lies within 30 Hz of ``hz``."""
    part = recording[int(start_s * SPEAKER_RATE) : int((start_s + seconds) * SPEAKER_RATE)]
    spectrum = np.abs(np.fft.rfft(part)) ** 2
    freqs = np.fft.rfftfreq(len(part), 1 / SPEAKER_RATE)
    return float(spectrum[np.abs(freqs - hz) < 30].sum() / max(spectrum.sum(), 1e-12))


def test_a_spoken_timer_rings_with_a_chime_and_its_notice_about_when_it_is_due(
    daemon, pulse_server, spoken, transcriber
):
    daemon.client.request("reset")
    mark = daemon.events.mark()
    recorder = pulse_server.start_recording()
    began = time.monotonic()
    pulse_server.speak_into_mic(spoken("Set a timer for five seconds."))
    transcript = daemon.events.wait_for("transcript", mark)
    started = daemon.events.wait_for("timer_started", mark)
    finished = daemon.events.wait_for("timer_finished", mark, timeout=60)
    rings = [
        daemon.events.wait_for("speaking_ended", mark, where=lambda e, n=n: _nth(daemon, mark, e, n)) for n in (1, 2, 3)
    ]
    daemon.wait_until("listening", timeout=30)
    time.sleep(0.3)
    recording = recorder.stop()

    assert word_error_rate("set a timer for five seconds", transcript["text"]) <= 0.2, transcript
    assert started["seconds"] == 5 and not rings[0]["interrupted"]
    assert rings[0]["spoken_text"] == "Timer set for five seconds."
    assert 4.0 <= finished["arrived"] - started["arrived"] <= 10.0  # about five seconds (a noisy machine)
    assert finished["notice"] == "Your five second timer is done."
    alarm_starts = [e for e in daemon.events.since(mark, "speaking_started") if e["arrived"] >= finished["arrived"]]
    assert len(alarm_starts) == RING_TIMES  # said again, as nobody spoke
    first_ring = alarm_starts[0]["arrived"] - began
    assert first_ring - (finished["arrived"] - began) < 3.0
    # the chime (A5 = 880 Hz, then E6), then the words, on the speaker
    chime_at = _first_sound(recording, first_ring - 0.5)
    assert tone_level(recording, chime_at, 880.0) > 0.3
    words = heard(transcriber, recording, chime_at + 0.5, chime_at + 3.5)
    assert word_error_rate("your five second timer is done", words) <= 0.35, words
    assert daemon.client.request("status")["timers"] == []


def test_saying_stop_ends_a_ringing_timer(daemon, pulse_server, spoken):
    daemon.client.request("reset")
    mark = daemon.events.mark()
    daemon.client.request("say", text="Set a timer for two seconds.")
    finished = daemon.events.wait_for("timer_finished", mark, timeout=60)
    ringing = daemon.events.wait_for("speaking_started", mark, where=lambda e: e["arrived"] >= finished["arrived"])
    time.sleep(0.4)  # into the chime
    assert daemon.client.request("status")["ringing"]
    pulse_server.speak_into_mic(spoken("Stop."))
    cut = daemon.events.wait_for("speaking_ended", mark, where=lambda e: e["arrived"] > ringing["arrived"])
    stop = daemon.events.wait_for("transcript", mark, where=lambda e: e["arrived"] > ringing["arrived"])
    time.sleep(RING_INTERVAL_S + 3.0)  # when the next ring would have come

    assert cut["interrupted"], cut
    assert word_error_rate("stop", stop["text"]) <= 0.5, stop
    later = [e for e in daemon.events.since(mark, "speaking_started") if e["arrived"] > ringing["arrived"]]
    assert later == [], "it rang again after stop"
    assert not daemon.client.request("status")["ringing"]


def test_a_timer_due_during_a_reply_waits_for_the_reply_to_end(daemon):
    daemon.client.request("reset")
    mark = daemon.events.mark()
    daemon.client.request("say", text="Set a timer for three seconds.")
    reply: dict = {}
    story = threading.Thread(
        target=lambda: reply.update(daemon.client.request("say", text="Tell me a long story about a lighthouse."))
    )
    story.start()
    finished = daemon.events.wait_for("timer_finished", mark, timeout=60)
    story.join(timeout=180)
    story_end = daemon.events.wait_for("speaking_ended", mark, where=lambda e: e["spoken_text"] == reply["spoken_text"])
    ring = daemon.events.wait_for("speaking_started", mark, where=lambda e: e["arrived"] > story_end["arrived"])
    daemon.events.wait_for("speaking_ended", mark, where=lambda e: e["arrived"] > ring["arrived"])
    daemon.client.request("interrupt")  # (the second ring is not this test's)
    daemon.wait_until("listening", timeout=30)

    assert reply["reply"] and not reply["interrupted"], reply  # the story was not cut by the timer
    assert finished["arrived"] < story_end["arrived"]  # it was due while the story was told...
    starts = [e["arrived"] for e in daemon.events.since(mark, "speaking_started")]
    ends = [e["arrived"] for e in daemon.events.since(mark, "speaking_ended")]
    assert all(end < start for end, start in zip(ends, starts[1:], strict=False)), (starts, ends)  # ...and waited


def _nth(daemon, mark: int, event: dict, n: int) -> bool:
    """``event`` is the ``n``th speaking_ended since ``mark``."""
    ended = daemon.events.since(mark, "speaking_ended")
    return len(ended) >= n and ended[n - 1] is event


def _first_sound(recording: np.ndarray, after_s: float, threshold: float = 0.02) -> float:
    hop = SPEAKER_RATE // 100
    start = max(0, int(after_s * SPEAKER_RATE))
    part = recording[start:]
    windows = part[: len(part) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(np.sqrt(np.mean(windows**2, axis=1)) > threshold)
    assert loud.size, "nothing on the speaker"
    return (start + loud[0] * hop) / SPEAKER_RATE
