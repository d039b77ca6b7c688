"""The daemon with a real echo path: everything the virtual speaker plays comes back into the microphone.

A separate daemon from tests/test_daemon.py: the echo path exists from its start, as with a laptop's speakers.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from daemon_process import DaemonProcess, running_daemon

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.textnorm import word_error_rate

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"


@pytest.fixture(scope="module")
def echoing_daemon(pulse_server, xdg_cache_home, tmp_path_factory):
    loop = pulse_server.pactl(
        "load-module", "module-loopback", "source=spk.monitor", "sink=micsink", "latency_msec=30"
    ).stdout.strip()
    try:
        with running_daemon(pulse_server, xdg_cache_home, tmp_path_factory.mktemp("echo-daemon")) as proc:
            yield proc
    finally:
        pulse_server.pactl("unload-module", loop, check=False)


def test_the_assistants_own_voice_coming_back_starts_no_turn(echoing_daemon):
    daemon = echoing_daemon
    assert daemon.client.request("status")["echo"] == "aec"
    mark = daemon.events.mark()
    for prompt in ("Tell me something nice about autumn.", "What is your favourite season?"):
        data = daemon.client.request("say", text=prompt)
        assert data["audio"]["played"] and not data["interrupted"], (data, daemon.log_tail(2000))
    time.sleep(1.0)  # the echo's tail
    assert daemon.events.since(mark, "speech_ended") == []
    assert [e["source"] for e in daemon.events.since(mark, "transcript")] == ["say", "say"]


def loudest(samples: np.ndarray, seconds: float) -> np.ndarray:
    """The loudest stretch of ``seconds`` (in 10 ms steps): voice, not the pause around it."""
    n, hop = int(seconds * SAMPLE_RATE), SAMPLE_RATE // 100
    energy = np.convolve(samples**2, np.ones(n), mode="valid")[::hop]
    start = int(np.argmax(energy)) * hop
    return samples[start : start + n]


def test_short_sounds_over_the_reply_do_not_interrupt_it(echoing_daemon, pulse_server):
    """0.2 s of voice over the reply (a cough, an "mm-hm"), three times 1.3 s apart: no interruption, no turn.

    At this loopback the echo is as loud as the played reply, and AEC3 sometimes suppresses such a burst as a whole
    (it took 50 dB off one): the daemon must hear at least one of the three as voice, or the rule is not exercised.
    Until the noise floor was learnt only where nothing played, one burst in five cut the reply: the floor rose to
    the echo's quietest frames, and the VAD took the echo-shaped comfort noise after the burst for more voice.
    """
    daemon = echoing_daemon
    mark = daemon.events.mark()
    speaker, result = daemon.say_at_length(mark, settle_s=3.0)  # the canceller has learnt the echo path
    burst = loudest(read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav", SAMPLE_RATE), 0.2)
    for _ in range(3):
        pulse_server.speak_into_mic(burst)
        time.sleep(1.1)
    speaker.join(120)
    assert result["audio"]["played"], result
    # The events stream may lag behind the say reply: wait for this reply's end, so the next test's mark follows it.
    ended = daemon.events.wait_for("speaking_ended", mark, timeout=30)
    assert not ended["interrupted"], ("a short sound cut the reply", result, daemon.log_tail(2000))
    heard = daemon.events.since(mark, "speech_started")
    assert heard, ("none of the three sounds was heard over the echo", daemon.log_tail(2000))
    assert daemon.events.since(mark, "speech_ended") == [], "0.2 s over the reply became a turn"


def test_the_user_still_barges_in_over_the_echo(echoing_daemon, pulse_server):
    daemon = echoing_daemon
    mark = daemon.events.mark()
    speaker, result = daemon.say_at_length(mark)
    user = read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav", SAMPLE_RATE)
    pulse_server.speak_into_mic(user, wait=False)
    ended = daemon.events.wait_for("speaking_ended", mark)
    speaker.join(60)
    assert ended["interrupted"] and result["interrupted"]
    transcript = daemon.events.wait_for("transcript", mark, where=lambda e: e["source"] == "microphone")
    # The onset may be lost while the canceller still holds the assistant's voice ("On Ashwood head then ..."
    # once); the rest of what the user said must come through.
    said = (
        "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do"
        " for them"
    )
    assert word_error_rate(said, transcript["text"]) <= 0.35, transcript["text"]


def test_started_without_a_sound_server_the_daemon_waits_and_says_so(pulse_server, xdg_cache_home, tmp_path):
    pulse_server.stop()
    try:
        env = dict(pulse_server.env, XDG_CACHE_HOME=str(xdg_cache_home))
        env.pop("VOICEOS_CONFIG", None)
        proc = DaemonProcess(env, tmp_path)
        try:
            status = proc.wait_until("no_audio")
            # ALSA's default device may open and then stall ("... stopped; reconnecting") before opening fails
            deadline = time.monotonic() + 10
            while "retrying" not in status["detail"] and time.monotonic() < deadline:
                time.sleep(0.1)
                status = proc.client.request("status")
            assert "retrying" in status["detail"] and status["devices"]["error"], status
            pulse_server.start()
            status = proc.wait_until("listening", timeout=60)
            assert status["devices"]["input"] and status["devices"]["error"] is None
        finally:
            proc.stop()
    finally:
        pulse_server.start()
