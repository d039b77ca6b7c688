"""`voiceos run` live: real recordings spoken into the virtual microphone, replies recorded from the speaker.

One daemon process serves the whole module (its models load once); the tests run in file order and the last ones
disturb it on purpose (sound server restart, stop). Its turns end by the silence timer (``turn.end_of_turn:
silence``), whose hangover several tests are about; tests/test_daemon_turn.py runs the default, the turn model.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_process import running_daemon

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio, resample
from voiceos.config import VadOptions
from voiceos.errors import VoiceosError
from voiceos.textnorm import word_error_rate
from voiceos.vad import VadSegmenter

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
LIBRIVOX = SPEECH / "librivox_cmusphinx" / "audio"
SPEAKER_RATE = 48000


@pytest.fixture(scope="module")
def daemon(pulse_server, xdg_cache_home, tmp_path_factory):
    directory = tmp_path_factory.mktemp("daemon")
    config = directory / "config.yaml"
    config.write_text("turn:\n  end_of_turn: silence\n")
    with running_daemon(pulse_server, xdg_cache_home, directory, config) as proc:
        yield proc


def speech(name: str) -> np.ndarray:
    return read_audio(LIBRIVOX / name, SAMPLE_RATE)


def speaker_text(transcriber, recording: np.ndarray) -> str:
    return transcriber.transcribe(resample(recording, SPEAKER_RATE, SAMPLE_RATE)).text


def loud_fraction(recording: np.ndarray, start_s: float, end_s: float, threshold: float = 0.02) -> float:
    """Share of 20 ms windows between the two times (seconds into the recording) whose RMS is over threshold."""
    part = recording[int(start_s * SPEAKER_RATE) : int(end_s * SPEAKER_RATE)]
    hop = SPEAKER_RATE // 50
    windows = part[: len(part) // hop * hop].reshape(-1, hop)
    if not len(windows):
        return 0.0
    return float(np.mean(np.sqrt(np.mean(windows**2, axis=1)) > threshold))


def test_daemon_reports_its_devices_models_and_state(daemon, transcriber):
    status = daemon.client.request("status")
    assert status["state"] == "listening"
    assert status["devices"]["input"] and status["devices"]["output"]
    assert status["models"] == {
        "asr": status["models"]["asr"],
        "lm": status["models"]["lm"],
        "voice": "joe",
        "device": "cpu",
    }
    assert status["models"]["asr"] == transcriber.describe()  # the engine in use, its model and where it runs
    assert "SmolLM2" in status["models"]["lm"]
    assert status["uptime_s"] > 0


def test_a_spoken_question_gets_a_spoken_reply_on_the_speaker(daemon, pulse_server, transcriber):
    mark = daemon.events.mark()
    recorder = pulse_server.start_recording()
    pulse_server.speak_into_mic(speech("sense_and_sensibility_01_austen_64kb-0930.wav"))
    transcript = daemon.events.wait_for("transcript", mark)
    ended = daemon.events.wait_for("speaking_ended", mark)
    time.sleep(0.3)  # the sound server's own buffer
    recording = recorder.stop()

    assert transcript["source"] == "microphone"
    assert word_error_rate("he might even have been made amiable himself", transcript["text"]) <= 0.2
    names = [e["event"] for e in daemon.events.since(mark)]
    order = ["speech_started", "speech_ended", "transcript", "reply_delta", "speaking_started", "speaking_ended"]
    firsts = [names.index(name) for name in order]
    assert firsts == sorted(firsts), names
    assert not ended["interrupted"] and ended["spoken_text"]
    heard = speaker_text(transcriber, recording)
    assert word_error_rate(ended["spoken_text"], heard) <= 0.3, (ended["spoken_text"], heard)
    timings = daemon.events.wait_for("timings", mark)["timings_ms"]
    assert timings["endpointing"] > 0 and timings["total"] > 0, timings
    for key in ("asr", "lm_first_token", "tts_first_audio"):  # after the end of turn: 0 once the head start did it
        assert timings[key] >= 0, timings
    assert timings["asr_speculative"] == 1.0  # transcribed during the end-of-turn silence (vad.speculate_ms)
    assert "head_start" in timings  # and the reply began then too (vad.speculate_reply), held until the end


def test_a_pause_inside_a_sentence_starts_a_reply_that_is_dropped_unheard_when_the_user_goes_on(daemon, pulse_server):
    """A 0.4 s pause is long enough to start transcribing and answering (vad.speculate_ms, 120 ms) but shorter than
    the hangover (500 ms): that held reply must never be heard, published or remembered; the whole sentence is
    answered once, after the real end of the turn."""
    first = speech("sense_and_sensibility_01_austen_64kb-0880.wav")[int(0.2 * SAMPLE_RATE) : int(2.8 * SAMPLE_RATE)]
    second = speech("sense_and_sensibility_01_austen_64kb-0930.wav")[int(0.25 * SAMPLE_RATE) :]
    pause = np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.float32)
    sound = np.concatenate([first, pause, second, np.zeros(SAMPLE_RATE, dtype=np.float32)])
    kinds = [type(event).__name__ for event in VadSegmenter(VadOptions()).feed(sound)]
    assert kinds.count("SpeechEnded") == 1 and kinds.index("SpeechPaused") < kinds.index("SpeechEnded"), kinds
    assert kinds.count("SpeechPaused") >= 2, kinds  # the pause in the middle, and the one that ends the turn
    daemon.client.request("reset")
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(sound)
    ended = daemon.events.wait_for("speaking_ended", mark)
    daemon.wait_until("listening", timeout=30)

    names = [e["event"] for e in daemon.events.since(mark)]
    assert names.count("transcript") == 1 and names.count("speaking_started") == 1, names
    assert names.index("speech_ended") < names.index("transcript") < names.index("reply_delta"), names
    said = "he was not an ill disposed young man he might even have been made amiable himself"
    assert word_error_rate(said, daemon.events.since(mark, "transcript")[0]["text"]) <= 0.3
    assert not ended["interrupted"] and ended["spoken_text"]
    assert daemon.client.request("status")["history_messages"] == 2  # the dropped reply left nothing behind
    assert "head_start" in daemon.events.wait_for("timings", mark)["timings_ms"]  # the last pause's was kept


def test_two_turns_in_a_row_both_get_answers_and_are_remembered(daemon, pulse_server):
    daemon.client.request("reset")
    for name in ("sense_and_sensibility_01_austen_64kb-0880.wav", "sense_and_sensibility_01_austen_64kb-0920.wav"):
        mark = daemon.events.mark()
        pulse_server.speak_into_mic(speech(name))
        daemon.events.wait_for("speaking_ended", mark)
        daemon.wait_until("listening", timeout=30)
    assert daemon.client.request("status")["history_messages"] == 4


def test_a_blip_after_the_end_of_turn_does_not_swallow_the_question(daemon, pulse_server):
    """A cough or click just after the user stopped opens an utterance that cuts the turn being thought about
    (the user might be going on); once it proves too short to be speech, that turn is answered after all."""
    question = speech("sense_and_sensibility_01_austen_64kb-0930.wav")
    other = speech("sense_and_sensibility_01_austen_64kb-0880.wav")
    hop, width = SAMPLE_RATE // 100, int(0.12 * SAMPLE_RATE)
    energy = np.convolve(other**2, np.ones(width), mode="valid")[::hop]
    start = int(np.argmax(energy)) * hop
    blip = other[start : start + width]  # 120 ms of voice: opens an utterance (90 ms), too short to keep (250 ms)
    gap = np.zeros(int(0.6 * SAMPLE_RATE), dtype=np.float32)  # just past the 500 ms hangover that ends the turn
    sound = np.concatenate([question, gap, blip, np.zeros(SAMPLE_RATE, dtype=np.float32)])
    kinds = [type(event).__name__ for event in VadSegmenter(VadOptions()).feed(sound)]
    assert kinds[-2:] == ["SpeechStarted", "SpeechDiscarded"] and kinds.count("SpeechEnded") == 1, kinds
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(sound)
    ended = daemon.events.wait_for("speaking_ended", mark)
    daemon.wait_until("listening", timeout=30)

    names = [e["event"] for e in daemon.events.since(mark)]
    assert names.count("speech_started") == 2 and names.count("speech_ended") == 1, names
    assert names.count("speaking_started") == 1, names
    answered = daemon.events.since(mark, "transcript")[-1]["text"]  # (published again if the cut turn had one)
    assert word_error_rate("he might even have been made amiable himself", answered) <= 0.2
    assert not ended["interrupted"] and ended["spoken_text"]
    log = daemon.log_tail(20_000)
    assert "turn interrupted (the user is still talking)" in log
    assert "the speech that cut the last turn was a blip" in log


def test_silence_and_noise_alone_start_no_turn(daemon, pulse_server):
    mark = daemon.events.mark()
    rng = np.random.default_rng(7)
    quiet = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    hiss = (0.01 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
    hum = (0.05 * np.sin(2 * np.pi * 50 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    pulse_server.speak_into_mic(np.concatenate([quiet, hiss, hum, quiet]))
    time.sleep(1.0)
    daemon.wait_until("listening", timeout=30)  # a noise onset may open an utterance; the ASR hears nothing in it
    assert daemon.events.since(mark, "transcript") == []
    assert daemon.events.since(mark, "speaking_started") == []


def test_say_on_the_socket_is_spoken_by_the_daemon_with_the_cli_json_shape(daemon, pulse_server, transcriber):
    mark = daemon.events.mark()
    recorder = pulse_server.start_recording()
    data = daemon.client.request("say", text="Good morning! How are you today?")
    time.sleep(0.3)
    recording = recorder.stop()
    assert {"input", "user_emotion", "reply", "reply_emotion", "audio", "timings_ms"} <= set(data)
    assert data["input"] == "Good morning! How are you today?" and data["audio"]["played"]
    assert daemon.events.wait_for("transcript", mark)["source"] == "say"
    assert word_error_rate(data["reply"], speaker_text(transcriber, recording)) <= 0.3


def test_voiceos_say_uses_the_running_daemon(daemon):
    mark = daemon.events.mark()
    cmd = [sys.executable, "-m", "voiceos", "say", "--json", "Hello there!"]
    proc = subprocess.run(cmd, env=daemon.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["audio"]["played"] and data["reply"]
    assert daemon.events.wait_for("transcript", mark)["text"] == "Hello there!"


def test_malformed_socket_input_gets_an_error_and_disturbs_nobody(daemon):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(b'this is not json\n{"cmd": "fly"}\n\xff\xfe\n')
        reader = sock.makefile("rb")
        replies = [json.loads(reader.readline()) for _ in range(3)]
    assert [r["ok"] for r in replies] == [False, False, False], replies
    assert daemon.client.request("status")["state"] == "listening"


def test_status_and_reset_commands_are_thin_clients_of_the_daemon(daemon):
    run = [sys.executable, "-m", "voiceos"]
    status = subprocess.run([*run, "status"], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["state"] in ("listening", "thinking", "speaking")
    reset = subprocess.run([*run, "reset"], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert reset.returncode == 0 and "cleared_messages" in json.loads(reset.stdout)
    assert daemon.client.request("status")["history_messages"] == 0


def test_what_the_user_tells_about_themselves_is_listed_removable_and_reset(daemon):
    daemon.client.request("reset")
    daemon.client.request("say", text="Hi, my name is Ada and I have a dog called Rex.")
    facts = daemon.client.request("memory")["facts"]
    assert [f["text"] for f in facts] == ["The user's name is Ada.", "The user has a dog called Rex."]
    run = [sys.executable, "-m", "voiceos", "memory"]
    listed = subprocess.run(run, env=daemon.env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "for this conversation only" in listed.stdout, listed
    assert "  1. The user's name is Ada." in listed.stdout.splitlines()
    removed = subprocess.run([*run, "--remove", "2"], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert removed.stdout.splitlines()[0] == "forgot: The user has a dog called Rex.", removed
    wrong = subprocess.run([*run, "--remove", "9"], env=daemon.env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1, wrong
    assert wrong.stderr.strip() == "voiceos: error: no fact number 9 (there are 1; `voiceos memory` lists them)"
    assert daemon.client.request("reset")["cleared_facts"] == 1
    assert daemon.client.request("memory")["facts"] == []


def test_listen_on_the_socket_answers_a_file_and_refuses_relative_paths(daemon):
    data = daemon.client.request("listen", path=str(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav"))
    assert word_error_rate("he might even have been made amiable himself", data["transcript"]) <= 0.2
    assert len(data["segments"]) == 1 and data["reply"] and data["timings_ms"]["asr"] > 0
    with pytest.raises(VoiceosError, match="absolute path"):
        daemon.client.request("listen", path="relative.wav")
    assert daemon.client.request("status")["state"] == "listening"


def test_barge_in_cuts_playback_and_memory_keeps_only_what_was_heard(daemon, pulse_server):
    daemon.client.request("reset")
    mark = daemon.events.mark()
    recorder = pulse_server.start_recording()
    recording_started = time.time()
    speaker, result = daemon.say_at_length(mark)
    pulse_server.speak_into_mic(speech("sense_and_sensibility_01_austen_64kb-0880.wav"), wait=False)
    started = daemon.events.wait_for("speech_started", mark)
    ended = daemon.events.wait_for("speaking_ended", mark)
    speaker.join(60)
    time.sleep(0.5)
    recording = recorder.stop()

    assert ended["interrupted"] and result["interrupted"], daemon.log_tail(3000)
    heard_words, reply_words = result["spoken_text"].split(), result["reply"].split()
    assert len(heard_words) < len(reply_words) and reply_words[: len(heard_words)] == heard_words
    cut_at = started["t"] - recording_started
    assert loud_fraction(recording, cut_at - 1.0, cut_at) > 0.3, "the assistant was speaking before the user"
    # The cut comes once audio.barge_in_min_ms (500 ms) of voice is heard: about 0.4 s after the onset event.
    assert loud_fraction(recording, cut_at + 0.7, cut_at + 1.5) < 0.05, (
        "the speaker kept playing after barge-in",
        daemon.log_tail(3000),
    )
    daemon.events.wait_for("transcript", mark, where=lambda e: e["source"] == "microphone")
    daemon.events.wait_for("speaking_ended", mark, where=lambda e: e["t"] > ended["t"])  # the user is answered
    daemon.wait_until("listening", timeout=60)


def test_a_sound_server_lost_mid_reply_ends_the_turn_and_says_so(daemon, pulse_server):
    """PulseAudio goes away while the assistant speaks (CI once saw "Connection terminated" mid-reply): the turn
    still ends, interrupted, the say request gets its answer, status says why, and the daemon answers again once
    the server is back."""
    mark = daemon.events.mark()
    speaker, result = daemon.say_at_length(mark)
    pulse_server.kill()
    try:
        ended = daemon.events.wait_for("speaking_ended", mark, timeout=30)
        speaker.join(30)
        assert not speaker.is_alive(), ("the say request got no answer", daemon.log_tail(3000))
        assert ended["interrupted"] and result["interrupted"], result
        assert result["interrupted_by"] == "audio lost", result
        error = daemon.events.wait_for("error", mark, timeout=10)
        assert error["message"].startswith("the audio stopped while the reply was spoken: microphone"), error
        status = daemon.client.request("status")
        assert status["state"] == "no_audio" and status["detail"], status
    finally:
        pulse_server.start()
    daemon.wait_until("listening", timeout=60)
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(speech("sense_and_sensibility_01_austen_64kb-0930.wav"))
    daemon.events.wait_for("speaking_ended", mark, timeout=120)


def test_the_daemon_recovers_when_the_sound_server_restarts(daemon, pulse_server):
    pulse_server.kill()
    time.sleep(1.0)
    pulse_server.start()
    daemon.wait_until("listening", timeout=60)
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(speech("sense_and_sensibility_01_austen_64kb-0930.wav"))
    transcript = daemon.events.wait_for("transcript", mark, timeout=60)
    assert word_error_rate("he might even have been made amiable himself", transcript["text"]) <= 0.2
    daemon.events.wait_for("speaking_ended", mark)


def test_the_daemon_stops_cleanly_and_quickly_on_sigterm(daemon):
    took = daemon.stop()
    assert daemon.process.returncode == 0, daemon.log_tail()
    assert took < 2.0, f"stopping took {took:.1f} s"
    assert not Path(daemon.socket).exists()
