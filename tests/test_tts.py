"""Piper TTS with the embedded en_US-joe-medium voice, and voice profile loading/validation."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import resample
from voiceos.errors import ConfigError, ModelNotFoundError, VoiceosError
from voiceos.models import embedded_piper_voice
from voiceos.textnorm import word_error_rate
from voiceos.tts import (
    Prosody,
    TtsEngine,
    UnknownVoiceError,
    VoiceProfileError,
    list_voices,
    load_engine,
    load_voice,
)
from voiceos.tts.piper import PiperEngine
from voiceos.tts.voices import default_voices_dir, profile_from_dict

SENTENCE = "The quick brown fox jumps over the lazy dog."
SR = 22050


@pytest.fixture(scope="session")
def engine(tts_engine) -> PiperEngine:
    assert isinstance(tts_engine, PiperEngine)
    return tts_engine


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _write_profile(path: Path, **overrides: object) -> Path:
    data: dict[str, object] = {"name": path.stem, "engine": "piper", "model": "embedded:en_US-joe-medium"}
    data.update(overrides)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# --- synthesis ---------------------------------------------------------------------------------------------------


def test_engine_satisfies_the_tts_protocol_at_22050_hz(engine: PiperEngine) -> None:
    assert isinstance(engine, TtsEngine)
    assert engine.sample_rate == SR


def test_sentence_synthesizes_to_plausible_non_silent_speech(engine: PiperEngine) -> None:
    start = time.perf_counter()
    audio = engine.synthesize_all(SENTENCE)
    elapsed = time.perf_counter() - start
    seconds = len(audio) / engine.sample_rate
    print(f"\none sentence: {seconds:.2f} s of audio synthesized in {elapsed:.3f} s (RTF {elapsed / seconds:.3f})")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.5 < seconds < 5.0
    assert np.all(np.isfinite(audio))
    assert np.max(np.abs(audio)) <= 1.0
    assert _rms(audio) > 0.02


def test_empty_or_whitespace_text_yields_nothing(engine: PiperEngine) -> None:
    assert list(engine.synthesize("")) == []
    assert list(engine.synthesize("  \n\t ")) == []
    assert engine.synthesize_all("   ").size == 0


def test_multi_sentence_text_streams_one_chunk_per_sentence_lazily(
    engine: PiperEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = engine.voice.phoneme_ids_to_audio

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.voice, "phoneme_ids_to_audio", counting)
    stream = engine.synthesize("Good morning. The kettle is on. Breakfast is ready!")
    first = next(stream)
    assert len(calls) == 1, "the first chunk must arrive before later sentences are synthesized"
    rest = list(stream)
    assert len(calls) == 3
    assert len(rest) == 2
    assert all(chunk.dtype == np.float32 and chunk.size > 0 for chunk in [first, *rest])


def test_later_chunks_start_with_the_emotions_pause(engine: PiperEngine) -> None:
    pause = Prosody(pause_ms=500)
    chunks = list(engine.synthesize("Hello there. Goodbye now.", pause))
    lead = int(0.5 * engine.sample_rate)
    assert len(chunks) == 2
    assert np.all(chunks[1][:lead] == 0.0)
    assert np.any(chunks[0][: lead // 4] != 0.0)


def test_faster_rate_gives_shorter_audio(engine: PiperEngine) -> None:
    fast = engine.synthesize_all(SENTENCE, Prosody(rate=1.3))
    slow = engine.synthesize_all(SENTENCE, Prosody(rate=0.8))
    assert len(fast) < 0.85 * len(slow)


def test_lower_energy_gives_lower_rms(engine: PiperEngine) -> None:
    loud = engine.synthesize_all(SENTENCE, Prosody(energy_db=0.0))
    quiet = engine.synthesize_all(SENTENCE, Prosody(energy_db=-6.0))
    assert _rms(quiet) < 0.7 * _rms(loud)


def test_emotion_maps_onto_piper_synthesis_settings(engine: PiperEngine) -> None:
    base = engine.profile.base
    cfg = engine.synthesis_config(Prosody(rate=1.25, expressiveness=0.5, energy_db=-20.0))
    assert cfg.length_scale == pytest.approx(base.length_scale / 1.25)
    assert cfg.noise_scale == pytest.approx(base.noise_scale * 0.5)
    assert cfg.noise_w_scale == pytest.approx(base.noise_w * 0.5)
    assert cfg.volume == pytest.approx(base.volume * 0.1)


def test_named_emotion_from_profile_is_applied(engine: PiperEngine) -> None:
    sad = engine.profile.prosody_for("sad")
    assert sad.energy_db < 0
    cfg = engine.synthesis_config(sad)
    assert cfg.volume < engine.synthesis_config(engine.profile.prosody_for(None)).volume
    assert engine.synthesize_all("I am sorry to hear that.", "sad").size > 0


@pytest.fixture(scope="module")
def whisper(transcriber):
    def transcribe(audio: np.ndarray, sample_rate: int) -> str:
        return transcriber.transcribe(resample(audio, sample_rate, SAMPLE_RATE)).text

    return transcribe


@pytest.mark.parametrize(
    "text",
    [
        "The weather is lovely today, so let's go for a walk in the park.",
        "Please remind me to call my sister tomorrow morning.",
        "I turned off the kitchen lights for you.",
    ],
)
def test_synthesized_speech_is_intelligible_to_whisper(engine: PiperEngine, whisper, text: str) -> None:
    heard = whisper(engine.synthesize_all(text), engine.sample_rate)
    wer = word_error_rate(text, heard)
    assert wer <= 0.25, f"WER {wer:.2f}: said {text!r}, heard {heard!r}"


# --- voice profiles ----------------------------------------------------------------------------------------------


def test_default_profile_is_joe_with_the_embedded_voice() -> None:
    assert "joe" in list_voices()
    profile = load_voice("joe")
    assert profile.name == "joe" and profile.engine == "piper"
    assert profile.model == "embedded:en_US-joe-medium"
    assert profile.model_path == embedded_piper_voice()[0]
    assert {"neutral", "calm", "joyful", "excited", "serious"} <= set(profile.emotion_names)
    assert default_voices_dir() == Path(profile.source).parent


def test_prosody_falls_back_to_neutral_and_resolves_the_pause() -> None:
    profile = load_voice("joe")
    neutral = profile.prosody_for("neutral")
    assert profile.prosody_for(None) == neutral
    assert profile.prosody_for("no-such-emotion") == neutral
    assert profile.prosody_for("  Excited ") == profile.prosody_for("excited")
    assert neutral.pause_ms == profile.base.sentence_pause_ms


def test_profile_without_emotions_falls_back_to_the_base_voice(tmp_path: Path) -> None:
    profile = load_voice(str(_write_profile(tmp_path / "plain.yaml", base={"sentence_pause_ms": 90})))
    assert profile.prosody_for("joyful") == Prosody(pause_ms=90)


def test_unknown_voice_name_lists_available_voices(tmp_path: Path) -> None:
    _write_profile(tmp_path / "alice.yaml")
    _write_profile(tmp_path / "bob.yaml")
    with pytest.raises(UnknownVoiceError, match=r"unknown voice 'carol'.*available: alice, bob") as info:
        load_voice("carol", tmp_path)
    assert isinstance(info.value, VoiceosError)
    assert "\n" not in str(info.value)


def test_profile_loads_by_name_from_a_voices_dir(tmp_path: Path) -> None:
    _write_profile(tmp_path / "alice.yaml", emotions={"joyful": {"rate": 1.2}})
    profile = load_voice("alice", tmp_path)
    assert profile.name == "alice"
    assert profile.prosody_for("joyful").rate == 1.2
    assert profile.prosody_for("joyful").pitch_semitones == 0.0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"voice_speed": 1.0}, "'voice_speed'"),
        ({"base": {"length_scale": 1.0, "loudness": 3}}, "'base.loudness'"),
        ({"emotions": {"joyful": {"rate": 1.1, "speed": 2}}}, "'emotions.joyful.speed'"),
        ({"emotions": {"calm": {"rate": "slow"}}}, "'emotions.calm.rate' must be a number"),
        ({"emotions": {"calm": {"pause_ms": 1.5}}}, "'emotions.calm.pause_ms' must be an integer or null"),
        ({"base": {"volume": True}}, "'base.volume' must be a number"),
        ({"base": {"noise_w": 9.0}}, "'base.noise_w' must be between"),
        ({"emotions": ["calm"]}, "'emotions' must be a mapping"),
        ({"engine": "festival"}, "'engine' must be one of piper, coqui"),
        ({"model": "embedded:en_GB-alan"}, "'model'"),
    ],
)
def test_invalid_profile_names_file_and_key(tmp_path: Path, overrides: dict, key: str) -> None:
    path = _write_profile(tmp_path / "bad.yaml", **overrides)
    with pytest.raises(VoiceProfileError) as info:
        load_voice(str(path))
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert str(path) in message and key in message
    assert "\n" not in message


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nbase: [unclosed\n", encoding="utf-8")
    with pytest.raises(VoiceProfileError, match=r"broken\.yaml: line \d+ invalid YAML"):
        load_voice(str(path))


def test_relative_model_path_resolves_against_the_profile_directory(tmp_path: Path) -> None:
    model, config = embedded_piper_voice()
    (tmp_path / "models").mkdir()
    (tmp_path / "voices").mkdir()
    shutil.copy(config, tmp_path / "models" / config.name)
    (tmp_path / "models" / model.name).symlink_to(model)
    path = _write_profile(tmp_path / "voices" / "local.yaml", model=f"../models/{model.name}")
    profile = load_voice("local", tmp_path / "voices")
    assert Path(profile.model) == (tmp_path / "models" / model.name).resolve()
    assert profile.model_files() == (Path(profile.model), Path(profile.model + ".json"))
    assert profile.source == str(path.resolve())


def test_missing_model_file_gives_a_one_line_error(tmp_path: Path) -> None:
    path = _write_profile(tmp_path / "ghost.yaml", model="models/ghost.onnx")
    profile = load_voice(str(path))
    with pytest.raises(ModelNotFoundError, match=r"ghost\.yaml: model file not found: .*ghost\.onnx") as info:
        load_engine(profile)
    assert "\n" not in str(info.value)


def test_corrupt_model_file_gives_a_one_line_error(tmp_path: Path) -> None:
    _, config = embedded_piper_voice()
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx model")
    shutil.copy(config, tmp_path / "junk.onnx.json")
    profile = load_voice(str(_write_profile(tmp_path / "junk.yaml", model="junk.onnx")))
    with pytest.raises(ModelNotFoundError, match=r"cannot load Piper model") as info:
        load_engine(profile)
    assert "\n" not in str(info.value)


def test_coqui_profile_with_a_missing_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    # The Coqui engine itself is tested in test_coqui.py; without coqui-tts the error names the pip extra instead.
    profile = profile_from_dict({"name": "c", "engine": "coqui", "model": "x.pth"}, source=tmp_path / "c.yaml")
    with pytest.raises(VoiceosError, match=r"Coqui checkpoint not found: .*x\.pth|voiceos\[coqui\]"):
        load_engine(profile)
