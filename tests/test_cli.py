"""The voiceos command as a user runs it: real models in a subprocess, JSON out, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceos.textnorm import word_error_rate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
JFK = DATA / "jfk.flac"
LIBRIVOX = DATA / "librivox_cmusphinx"
PROMPT = "Tell me something nice about autumn."  # a reply of several sentences: a WER over more than a few words


def run_voiceos(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voiceos", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("voiceos: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_say_json_reply_round_trips_through_transcribe(tmp_path, no_sound_env):
    out = tmp_path / "reply.wav"
    proc = run_voiceos("say", "--local", "--json", "--out", str(out), PROMPT, env=no_sound_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["input"] == PROMPT
    assert data["reply"].strip()
    assert data["user_emotion"]["label"] in {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert data["reply_emotion"]
    assert data["audio"]["path"] == str(out) and data["audio"]["sample_rate"] == 22050
    assert data["audio"]["seconds"] > 0.5
    for key in ("lm_first_token", "lm_total", "tts_first_audio", "total"):
        assert data["timings_ms"][key] > 0
    assert data["timings_ms"]["lm_first_token"] <= data["timings_ms"]["tts_first_audio"] <= data["timings_ms"]["total"]
    info = sf.info(str(out))
    assert info.samplerate == 22050 and abs(info.duration - data["audio"]["seconds"]) < 0.05

    proc = run_voiceos("transcribe", "--jsonl", str(out), env=no_sound_env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[0])
    assert record["path"] == str(out)
    assert word_error_rate(data["reply"], record["text"]) <= 0.25, (data["reply"], record["text"])


def test_say_without_an_audio_device_writes_the_reply_and_says_where(tmp_path, no_sound_env):
    proc = run_voiceos("say", "--local", "Good morning!", env=no_sound_env)
    assert proc.returncode == 0, proc.stderr
    expected = tmp_path / "voiceos" / "last-reply.wav"
    assert expected.is_file() and sf.info(str(expected)).duration > 0.3
    assert str(expected) in proc.stdout
    assert "no audio output device" in proc.stdout


def test_transcribe_jfk_finds_the_famous_line(no_sound_env):
    proc = run_voiceos("transcribe", "--jsonl", str(JFK), env=no_sound_env)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["path"] == str(JFK)
    assert "ask not what your country can do for you" in " ".join(record["text"].lower().replace(",", "").split())
    assert record["seconds"] == pytest.approx(11.0, abs=0.1)


def test_transcribe_keeps_going_past_a_bad_file(tmp_path, no_sound_env):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    good = LIBRIVOX / "audio" / "goforward.wav"
    proc = run_voiceos("transcribe", "--jsonl", str(bad), str(good), env=no_sound_env)
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[0]["path"] == str(bad) and "error" in records[0]
    assert records[1]["path"] == str(good)
    assert word_error_rate("go forward ten meters", records[1]["text"]) == 0.0
    assert_one_line_error(proc, str(bad))


def test_listen_answers_a_librivox_utterance(no_sound_env):
    wav = LIBRIVOX / "audio" / "sense_and_sensibility_01_austen_64kb-0930.wav"
    proc = run_voiceos("listen", "--json", "--no-play", str(wav), env=no_sound_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert word_error_rate("he might even have been made amiable himself", data["transcript"]) <= 0.2
    assert len(data["segments"]) == 1
    segment = data["segments"][0]
    assert segment["start_s"] < 0.5 and 2.5 < segment["end_s"] < 3.6
    assert data["input"] == data["transcript"]
    assert data["reply"].strip() and data["audio"]["seconds"] > 0.5
    assert data["timings_ms"]["asr"] > 0 and data["timings_ms"]["vad"] >= 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["say", "--local", ""], ["empty text"]),
        (["say", "--local", "   \t  "], ["empty text"]),
        (["say", "--local", "x" * 2001], ["over the limit of 2000"]),
        (["listen", "/no/such/file.wav"], ["/no/such/file.wav"]),
    ],
)
def test_bad_input_is_one_line_error_without_loading_models(args, fragments, no_sound_env):
    proc = run_voiceos(*args, env=no_sound_env, timeout=60)
    assert_one_line_error(proc, *fragments)


def test_listen_rejects_empty_corrupt_and_silent_audio(tmp_path, no_sound_env):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.int16), 16000)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(os.urandom(4000))
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(32000, dtype=np.int16), 16000)
    for path in (empty, corrupt):
        assert_one_line_error(run_voiceos("listen", str(path), env=no_sound_env, timeout=60), str(path))
    assert_one_line_error(run_voiceos("listen", "--no-play", str(silent), env=no_sound_env), "no speech detected")


def test_unknown_voice_and_bad_config_are_one_line_errors(tmp_path, no_sound_env):
    config = tmp_path / "voice.yaml"
    config.write_text("tts:\n  voice: nobody\n")
    proc = run_voiceos("--config", str(config), "say", "--local", "hello", env=no_sound_env, timeout=60)
    assert_one_line_error(proc, "nobody", "joe")
    config.write_text("vad:\n  hangover: 3\n")
    proc = run_voiceos("--config", str(config), "say", "--local", "hello", env=no_sound_env, timeout=60)
    assert_one_line_error(proc, str(config), "vad.hangover")
    env = dict(no_sound_env, VOICEOS_CONFIG=str(config))
    assert_one_line_error(run_voiceos("doctor", env=env, timeout=60), "vad.hangover")


def test_text_limit_comes_from_config(tmp_path, no_sound_env):
    config = tmp_path / "limit.yaml"
    config.write_text("limits:\n  max_text_chars: 10\n")
    proc = run_voiceos("--config", str(config), "say", "--local", "this is longer than ten", env=no_sound_env)
    assert_one_line_error(proc, "over the limit of 10", "limits.max_text_chars")


def test_doctor_passes_with_embedded_models_and_fails_on_a_missing_model(tmp_path, no_sound_env):
    proc = run_voiceos("doctor", "--json", env=no_sound_env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    for name in ("packages", "asr model", "dialogue model", "voice", "device plan"):
        assert checks[name]["ok"], checks[name]
    assert not checks["audio devices"]["ok"] and not checks["audio devices"]["required"]
    kernel = checks["LM block kernel"]  # make installs gcc
    assert kernel["ok"] and "ready" in kernel["detail"], kernel
    assert "threads)" in kernel["detail"], kernel  # `voiceos` set OpenMP's wait policy before torch loaded

    config = tmp_path / "missing.yaml"
    config.write_text(f"asr:\n  engine: whisper\n  model: {tmp_path}/no-whisper-here\n")
    proc = run_voiceos("--config", str(config), "doctor", env=no_sound_env, timeout=120)
    assert proc.returncode == 1
    assert "[FAIL] asr model" in proc.stdout and "no model.bin" in proc.stdout
    config.write_text(f"asr:\n  engine: moonshine\n  model: {tmp_path}\n")
    proc = run_voiceos("--config", str(config), "doctor", env=no_sound_env, timeout=120)
    assert proc.returncode == 1
    assert "[FAIL] asr model" in proc.stdout and "lacks encoder_model, decoder_model_merged" in proc.stdout


def test_devices_without_a_sound_server_says_so(no_sound_env):
    proc = run_voiceos("devices", env=no_sound_env, timeout=60)
    assert proc.returncode == 0
    assert "no audio devices found" in proc.stdout


def test_emotion_prints_one_line_per_input_in_order_and_keeps_going_past_bad_lines(no_sound_env):
    lines = [
        json.dumps({"text": "I am so happy, this is wonderful!"}),
        "not json",
        json.dumps({"text": "Oh no, really?", "context": ["My dog died yesterday."]}),
        json.dumps({"text": "fine", "context": "not a list"}),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "voiceos", "emotion", "--jsonl"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        env=no_sound_env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 4
    assert records[0]["label"] == "joy" and abs(sum(records[0]["scores"].values()) - 1) < 0.01
    assert "not JSON" in records[1]["error"] and "context" in records[3]["error"]
    assert set(records[2]["scores"]) == {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert proc.stderr.count("voiceos: error: line") == 2 and "Traceback" not in proc.stderr


def test_train_passes_its_options_to_the_emotion_trainer(no_sound_env):
    proc = run_voiceos("train", "--help", env=no_sound_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--goemotions-train" in proc.stdout and "--meld-train" in proc.stdout
