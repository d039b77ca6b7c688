"""Playback through real PortAudio streams into a private PulseAudio server (the pulse_server fixture).

What reaches the virtual speaker is recorded from its monitor, so these tests check the sound itself: pitch,
order, gaps, and when it stops.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from voiceos.audio import playback
from voiceos.audio.playback import ChunkPlayer, have_output_device, list_devices, play, resolve_device
from voiceos.errors import AudioDeviceError

pytestmark = pytest.mark.audio

RATE = 48000  # the virtual speaker's own rate: no resampling between what we play and what we record
WINDOW = RATE // 100  # 10 ms analysis windows


def tone(freq: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def loud_windows(samples: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Per 10 ms window: is the RMS above ``threshold``?"""
    n = len(samples) // WINDOW
    rms = np.sqrt(np.mean(samples[: n * WINDOW].reshape(n, WINDOW) ** 2, axis=1))
    return rms > threshold


def sounding(samples: np.ndarray) -> np.ndarray:
    """The recording from the first to the last loud window."""
    loud = np.flatnonzero(loud_windows(samples))
    assert loud.size, "nothing was heard on the speaker"
    return samples[loud[0] * WINDOW : (loud[-1] + 1) * WINDOW]


def record(pulse_server, action) -> np.ndarray:
    recorder = pulse_server.start_recording()
    try:
        action()
        time.sleep(0.15)  # the monitor delivers a little after the sink played it
    finally:
        audio = recorder.stop()
    return audio


# -- devices -----------------------------------------------------------------------------------------------------


def test_the_private_sound_server_runs_realtime_without_a_cpu_time_limit_that_would_kill_it(pulse_server) -> None:
    """At PulseAudio's default rlimit-rttime (200 ms) the kernel SIGKILLs the server when a realtime sink thread
    runs that long without sleeping; CI once lost the server mid-reply that way ("Connection terminated")."""
    limits = Path(f"/proc/{pulse_server._server.pid}/limits").read_text().splitlines()
    timeout = next(line for line in limits if line.startswith("Max realtime timeout"))
    assert timeout.split()[3:5] == ["unlimited", "unlimited"], timeout


def test_list_devices_shows_the_virtual_devices(pulse_server) -> None:
    devices = list_devices()
    names = [d["name"] for d in devices]
    assert {"vspk", "spkmon", "vmic"} <= set(names)
    assert [d["index"] for d in devices] == list(range(len(devices)))
    assert sum(d["is_default_output"] for d in devices) == 1
    vspk = devices[names.index("vspk")]
    assert vspk["max_output_channels"] > 0 and vspk["default_samplerate"] > 0
    assert have_output_device()


def test_resolve_device_by_name_substring_any_case(pulse_server) -> None:
    names = {d["name"]: d["index"] for d in list_devices()}
    assert resolve_device("VSP", "output") == names["vspk"]
    assert resolve_device("mic", "input") == names["vmic"]
    assert resolve_device("spkmon", "input") == names["spkmon"]
    assert resolve_device("pulse", "output") == names["pulse"]  # an exact name beats longer names containing it


def test_resolve_device_by_index_and_auto(pulse_server) -> None:
    index = next(d["index"] for d in list_devices() if d["name"] == "vspk")
    assert resolve_device(str(index), "output") == index
    assert resolve_device(" auto ", "input") is None
    assert resolve_device("AUTO", "output") is None


@pytest.mark.parametrize("spec", ["no-such-speaker", "999"])
def test_resolve_unknown_device_lists_the_available_ones(pulse_server, spec: str) -> None:
    with pytest.raises(AudioDeviceError) as err:
        resolve_device(spec, "output")
    message = str(err.value)
    assert "\n" not in message and spec in message and "vspk" in message


def test_resolve_device_refuses_a_device_without_channels_of_that_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [
        {"index": 0, "name": "Speakers", "max_input_channels": 0, "max_output_channels": 2},
        {"index": 1, "name": "USB Mic", "max_input_channels": 1, "max_output_channels": 0},
    ]
    monkeypatch.setattr(playback, "list_devices", lambda: fake)
    with pytest.raises(AudioDeviceError, match=r"device 0 \(Speakers\) has no input channels.*1: USB Mic"):
        resolve_device("0", "input")
    with pytest.raises(AudioDeviceError, match=r"'speak'.*not found.*available: 1: USB Mic"):
        resolve_device("speak", "input")
    monkeypatch.setattr(playback, "list_devices", lambda: [])
    with pytest.raises(AudioDeviceError, match="no audio devices"):
        resolve_device("Speakers", "output")


# -- play() --------------------------------------------------------------------------------------------------------


def test_play_sends_a_tone_to_the_speaker(pulse_server) -> None:
    device = resolve_device("vspk", "output")
    started = time.monotonic()
    audio = record(pulse_server, lambda: play(tone(440, 0.5), RATE, device))
    took = time.monotonic() - started
    heard = sounding(audio)
    assert dominant_hz(heard) == pytest.approx(440, abs=3)
    assert len(heard) / RATE == pytest.approx(0.5, abs=0.05)
    assert np.sqrt(np.mean(heard**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert 0.5 <= took < 1.5  # play() returned after the tone, not long after


# -- ChunkPlayer ---------------------------------------------------------------------------------------------------


def test_chunks_play_in_order_without_gaps(pulse_server) -> None:
    device = resolve_device("vspk", "output")
    freqs = [300, 600, 900]
    with ChunkPlayer(RATE, device) as player:

        def speak() -> None:
            for freq in freqs:
                player.write(tone(freq, 0.3))
            player.drain()

        audio = record(pulse_server, speak)
        assert player.underruns == 0
        assert player.played_seconds == pytest.approx(0.9, abs=1e-3)
    heard = sounding(audio)
    assert loud_windows(heard).all(), "a gap between chunks"
    assert len(heard) / RATE == pytest.approx(0.9, abs=0.05)
    thirds = np.array_split(heard, 3)
    assert [dominant_hz(part[WINDOW:-WINDOW]) for part in thirds] == pytest.approx(freqs, abs=5)


def test_chunks_written_while_playing_join_seamlessly(pulse_server) -> None:
    """A producer that stays ahead of the speaker (like TTS, sentence by sentence) leaves no gaps."""
    device = resolve_device("vspk", "output")
    with ChunkPlayer(RATE, device) as player:

        def produce() -> None:
            for _ in range(4):
                player.write(tone(500, 0.2))
                time.sleep(0.1)
            player.drain()

        audio = record(pulse_server, produce)
        assert player.underruns == 0
    heard = sounding(audio)
    quiet = np.flatnonzero(~loud_windows(heard))
    assert loud_windows(heard).all(), f"gaps at {quiet * 0.01} s, xruns={player.xruns}"
    assert len(heard) / RATE == pytest.approx(0.8, abs=0.05)


def test_a_late_producer_is_counted_as_an_underrun(pulse_server) -> None:
    with ChunkPlayer(RATE, resolve_device("vspk", "output")) as player:
        player.write(tone(500, 0.1))
        time.sleep(0.3)
        player.write(tone(500, 0.1))
        player.drain()
        assert player.underruns == 1
        assert player.played_seconds == pytest.approx(0.2, abs=1e-3)


def test_running_dry_after_finish_is_the_end_not_an_underrun(pulse_server) -> None:
    """The daemon never drains: finish() says the last chunk is written, so only gaps before it are counted."""
    with ChunkPlayer(RATE, resolve_device("vspk", "output")) as player:
        player.write(tone(500, 0.1))
        player.finish()
        time.sleep(0.3)
        assert player.underruns == 0
        player.write(tone(500, 0.1))  # the next reply counts gaps again
        time.sleep(0.3)
        assert player.underruns == 1


def test_stop_cuts_playback_and_drops_the_queue(pulse_server) -> None:
    device = resolve_device("vspk", "output")
    with ChunkPlayer(RATE, device) as player:
        state: dict[str, float] = {}

        def barge_in() -> None:
            started = time.monotonic()
            player.write(tone(440, 3.0))
            state["write_s"] = time.monotonic() - started
            time.sleep(0.4)
            player.stop()
            state["played"] = player.played_seconds
            time.sleep(0.2)

        audio = record(pulse_server, barge_in)
        assert player.queued_seconds == 0
        assert player.played_seconds == state["played"]  # nothing more after the cut
    assert state["write_s"] < 0.05  # write() queues, it does not wait for the device
    heard = sounding(audio)
    assert len(heard) / RATE < 0.6  # 3 s were queued
    assert state["played"] == pytest.approx(0.4 - player.latency, abs=0.1)  # the first sound comes after latency
    assert len(heard) / RATE == pytest.approx(state["played"], abs=0.05)


def test_player_is_usable_again_after_stop(pulse_server) -> None:
    with ChunkPlayer(RATE, resolve_device("vspk", "output")) as player:
        player.write(tone(440, 2.0))
        time.sleep(0.2)
        player.stop()
        first = player.played_seconds
        time.sleep(0.2)  # keep the cut tone's last milliseconds out of the next recording
        audio = record(pulse_server, lambda: (player.write(tone(880, 0.3)), player.drain()))
        assert player.played_seconds == pytest.approx(first + 0.3, abs=1e-3)
    heard = sounding(audio)
    assert dominant_hz(heard) == pytest.approx(880, abs=5)
    assert len(heard) / RATE == pytest.approx(0.3, abs=0.05)


def test_closed_player_refuses_writes_and_keeps_its_count(pulse_server) -> None:
    player = ChunkPlayer(RATE, resolve_device("vspk", "output"))
    player.write(tone(440, 0.1))
    player.drain()
    player.close()
    player.close()
    assert player.played_seconds == pytest.approx(0.1, abs=1e-3)
    with pytest.raises(RuntimeError, match="closed"):
        player.write(tone(440, 0.1))


def test_write_from_another_thread_while_draining(pulse_server) -> None:
    with ChunkPlayer(RATE, resolve_device("vspk", "output")) as player:
        player.write(tone(440, 0.2))
        writer = threading.Thread(target=player.write, args=(tone(440, 0.1),))
        writer.start()
        writer.join()
        player.drain()
        assert player.played_seconds == pytest.approx(0.3, abs=1e-3)


def test_queue_bound_refuses_a_runaway_producer(pulse_server) -> None:
    with ChunkPlayer(RATE, resolve_device("vspk", "output"), max_queued_s=1.0) as player:
        player.write(tone(440, 0.8))
        with pytest.raises(OverflowError, match="1 s limit"):
            player.write(tone(440, 0.8))


# -- the fixture's virtual microphone (used by the listening tests) --------------------------------------------------


def test_audio_spoken_into_the_mic_arrives_bit_exact_on_vmic(pulse_server) -> None:
    pcm = (np.random.default_rng(3).normal(0, 0.1, 16000) * 32768).clip(-32768, 32767).astype(np.int16)
    sent = pcm.astype(np.float32) / 32768
    recorder = pulse_server.start_recording(source="vmic", rate=16000)
    pulse_server.speak_into_mic(sent)
    time.sleep(0.1)
    got = recorder.stop()
    first = np.flatnonzero(got)[0]
    np.testing.assert_array_equal(got[first : first + len(sent)], sent)


# -- no sound server -----------------------------------------------------------------------------------------------

NO_SERVER_PROBE = """
import json, numpy as np
from voiceos.audio.playback import list_devices, have_output_device, play
from voiceos.errors import AudioDeviceError
result = {"devices": list_devices(), "have_output": have_output_device()}
try:
    play(np.zeros(1600, np.float32), 16000)
    result["play"] = "played"
except AudioDeviceError as err:
    result["play"] = "AudioDeviceError: " + str(err)
print(json.dumps(result))
"""


def test_without_a_sound_server_there_are_no_devices_and_play_fails_clearly(pulse_server, tmp_path: Path) -> None:
    env = {**pulse_server.env, "PULSE_SERVER": f"unix:{tmp_path / 'missing.sock'}"}
    out = subprocess.run(
        [sys.executable, "-c", NO_SERVER_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == [] and result["have_output"] is False
    assert result["play"].startswith("AudioDeviceError: cannot open output device")
    assert "\n" not in result["play"]
