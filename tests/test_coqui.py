"""The Coqui TTS engine, driven through voice profiles and ``voiceos say`` with a tiny VITS checkpoint built here.

Coqui's models download from hubs, so the session builds a randomly initialized VITS (a few hundred thousand
parameters) and saves it the way Coqui saves checkpoints. Its speech is noise-like, not intelligible: the tests
check the real loading and synthesis code paths, rates, lengths and levels, never the words.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

pytest.importorskip("TTS", reason="coqui-tts is not installed (pip install 'voiceos[coqui]')")

from voiceos.errors import ModelNotFoundError, VoiceosError
from voiceos.tts import Prosody, TtsEngine, VoiceProfileError, load_engine, load_voice
from voiceos.tts.coqui import CoquiEngine, _read_clip, time_stretch

RATE = 16000  # the tiny model's sample rate (not Piper's 22050, so the tests see which engine spoke)
SENTENCE = "The quick brown fox jumps over the lazy dog."


def _build_tiny_vits(directory: Path) -> tuple[Path, Path]:
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    args = VitsArgs(
        hidden_channels=32,
        hidden_channels_ffn_text_encoder=64,
        num_layers_text_encoder=1,
        num_layers_flow=1,
        num_layers_posterior_encoder=1,
        use_sdp=False,  # the deterministic duration predictor: lengths follow length_scale exactly
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4],  # product = hop_length
        upsample_initial_channel_decoder=32,
        upsample_kernel_sizes_decoder=[16, 16, 8],
        init_discriminator=False,
    )
    letters = "abcdefghijklmnopqrstuvwxyz"
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,  # characters in, so no espeak/phonemizer is involved
        text_cleaner="english_cleaners",
        # No trimming: Coqui's end-of-speech detector cuts an untrained model's noise-like output to a fixed length.
        audio=BaseAudioConfig(
            sample_rate=RATE, hop_length=256, win_length=1024, fft_size=1024, mel_fmax=None, do_trim_silence=False
        ),
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            pad="_",
            eos="",
            bos="",
            blank=None,
            characters=letters + letters.upper(),
            punctuations="!'(),-.:;? ",
            phonemes=None,
            is_unique=True,
            is_sorted=True,
        ),
    )
    with torch.random.fork_rng():  # a fixed model without touching the session's random state
        torch.manual_seed(0)
        model = Vits(config)
    # An untrained duration predictor gives every character a fraction of a frame, which rounds up to one frame at any
    # speed. Make it predict 4 frames per token instead, so length_scale changes the length as in a trained voice.
    with torch.no_grad():
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(math.log(4.0))
    checkpoint, config_path = directory / "model.pth", directory / "config.json"
    torch.save({"model": model.state_dict()}, checkpoint)
    config.save_json(str(config_path))
    return checkpoint, config_path


def _write_profile(path: Path, **overrides: object) -> Path:
    data: dict[str, object] = {"name": path.stem, "engine": "coqui", "model": "model.pth", "config": "config.json"}
    data.update(overrides)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def coqui_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("coqui-tiny-vits")
    _build_tiny_vits(directory)
    return directory


@pytest.fixture(scope="session")
def coqui_profile(coqui_dir: Path) -> Path:
    return _write_profile(
        coqui_dir / "tiny.yaml",
        base={"sentence_pause_ms": 100, "volume": 0.8},
        emotions={
            "neutral": {},
            "slow": {"rate": 0.5},
            "fast": {"rate": 2.0},
            "quiet": {"energy_db": -12.0},
            "sad": {"rate": 0.85, "pitch_semitones": -2.0, "pitch_range": 0.6, "energy_db": -4.0, "pause_ms": 300},
        },
    )


@pytest.fixture(scope="session")
def coqui(coqui_profile: Path) -> CoquiEngine:
    engine = load_engine(load_voice(str(coqui_profile)))
    assert isinstance(engine, CoquiEngine)
    return engine


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# --- loading through a voice profile -------------------------------------------------------------------------------


def test_profile_with_engine_coqui_loads_the_checkpoint_at_the_configs_rate(coqui: CoquiEngine) -> None:
    assert isinstance(coqui, TtsEngine)
    assert coqui.sample_rate == RATE
    assert type(coqui.model).__name__ == "Vits"
    assert coqui.profile.engine == "coqui"
    coqui.warm()


def test_checkpoint_config_defaults_to_config_json_beside_it(coqui_dir: Path) -> None:
    profile = load_voice(str(_write_profile(coqui_dir / "noconfig.yaml", config=None)))
    assert load_engine(profile).sample_rate == RATE


# --- synthesis -----------------------------------------------------------------------------------------------------


def test_sentence_synthesizes_to_non_empty_float32_audio_at_the_models_rate(coqui: CoquiEngine) -> None:
    audio = coqui.synthesize_all(SENTENCE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.3 < audio.size / RATE < 10.0
    assert np.all(np.isfinite(audio))
    # Each sentence peaks at base.volume (0.8), as with Piper; nothing is left of Coqui's trailing padding.
    assert np.max(np.abs(audio)) == pytest.approx(0.8, abs=1e-3)
    assert np.any(audio[-RATE // 10 :] != 0.0)


def test_multi_sentence_text_yields_one_chunk_per_sentence_with_the_pause_between(coqui: CoquiEngine) -> None:
    chunks = list(coqui.synthesize("Hello there. How are you today? I am fine!"))
    assert len(chunks) == 3
    assert all(c.dtype == np.float32 and c.size > 0 for c in chunks)
    pause = round(0.1 * RATE)  # base.sentence_pause_ms of the profile
    assert np.any(chunks[0][:pause] != 0.0)  # no pause before the first sentence
    for chunk in chunks[1:]:
        assert np.all(chunk[:pause] == 0.0) and np.any(chunk[pause:] != 0.0)


def test_empty_or_whitespace_text_yields_nothing(coqui: CoquiEngine) -> None:
    assert list(coqui.synthesize("")) == []
    assert list(coqui.synthesize(" \n\t ")) == []
    assert coqui.synthesize_all("  ").size == 0


def test_slow_emotion_gives_longer_audio_than_fast_natively(coqui: CoquiEngine) -> None:
    slow = coqui.synthesize_all(SENTENCE, "slow")
    neutral = coqui.synthesize_all(SENTENCE)
    fast = coqui.synthesize_all(SENTENCE, "fast")
    # rate 0.5 -> VITS length_scale 2, rate 2 -> 0.5: durations scale about 2x each way (ceil'd per character).
    assert slow.size > 1.6 * neutral.size
    assert fast.size < 0.7 * neutral.size
    assert coqui.model.length_scale == pytest.approx(0.5)  # set natively, not stretched afterwards


def test_energy_db_lowers_the_level_by_that_many_db(coqui: CoquiEngine) -> None:
    loud = coqui.synthesize_all(SENTENCE, "neutral")
    quiet = coqui.synthesize_all(SENTENCE, "quiet")
    assert np.max(np.abs(quiet)) == pytest.approx(0.8 * 10 ** (-12 / 20), rel=1e-3)
    change_db = 20 * np.log10(_rms(quiet) / _rms(loud))
    assert -15.0 < change_db < -9.0  # noise-scale sampling differs per call; the gain is exact


def test_a_full_emotion_table_with_pitch_and_pause_applies(coqui: CoquiEngine) -> None:
    chunks = list(coqui.synthesize("Oh no. That is sad.", "sad"))
    assert len(chunks) == 2
    pause = round(0.3 * RATE)
    assert np.all(chunks[1][:pause] == 0.0)
    assert all(np.all(np.isfinite(c)) and np.max(np.abs(c)) <= 1.0 for c in chunks)


def test_expressiveness_scales_the_vits_noise_so_zero_is_deterministic(coqui: CoquiEngine) -> None:
    steady = [coqui.synthesize_all("Hello there.", Prosody(expressiveness=0.0)) for _ in range(2)]
    lively = [coqui.synthesize_all("Hello there.", Prosody(expressiveness=1.5)) for _ in range(2)]
    assert np.array_equal(steady[0], steady[1])
    assert not np.array_equal(lively[0], lively[1])


def test_prosody_objects_are_accepted_like_emotion_names(coqui: CoquiEngine) -> None:
    audio = coqui.synthesize_all(SENTENCE, Prosody(rate=1.5, energy_db=-6.0))
    assert audio.size > 0 and np.max(np.abs(audio)) == pytest.approx(0.8 * 10 ** (-6 / 20), rel=1e-3)


def test_time_stretch_post_processing_changes_length_for_models_without_a_speed_knob() -> None:
    t = np.arange(RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    longer = time_stretch(tone, RATE, 1.5)
    assert longer.dtype == np.float32
    assert abs(longer.size / tone.size - 1.5) < 0.05


def test_speaker_clips_are_read_to_mono_at_the_requested_rate_without_ffmpeg(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 150 * t), 0.1 * np.sin(2 * np.pi * 300 * t)], axis=1)
    sf.write(tmp_path / "me.flac", stereo, 44100)
    audio = _read_clip(str(tmp_path / "me.flac"), 22050)
    assert audio.dtype == np.float32 and audio.shape == (22050,)
    with pytest.raises(ModelNotFoundError):
        _read_clip(str(tmp_path / "missing.wav"), 22050)


# --- errors --------------------------------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_missing_checkpoint_is_a_one_line_error_naming_the_file(coqui_dir: Path) -> None:
    profile = load_voice(str(_write_profile(coqui_dir / "missing.yaml", model="nope.pth")))
    with pytest.raises(ModelNotFoundError) as info:
        load_engine(profile)
    assert "nope.pth" in _one_line(info.value) and "missing.yaml" in str(info.value)


def test_bad_config_is_a_one_line_error(coqui_dir: Path) -> None:
    (coqui_dir / "bad.json").write_text('{"model": "vits", "audio": ', encoding="utf-8")
    profile = load_voice(str(_write_profile(coqui_dir / "badconfig.yaml", config="bad.json")))
    with pytest.raises(ModelNotFoundError) as info:
        load_engine(profile)
    assert "cannot load Coqui model" in _one_line(info.value)


def test_checkpoint_that_does_not_match_its_config_is_a_one_line_error(coqui_dir: Path) -> None:
    (coqui_dir / "garbage.pth").write_bytes(b"not a torch checkpoint")
    profile = load_voice(str(_write_profile(coqui_dir / "garbage.yaml", model="garbage.pth")))
    with pytest.raises(ModelNotFoundError) as info:
        load_engine(profile)
    assert "garbage.pth" in _one_line(info.value)


def test_missing_speaker_clip_is_a_one_line_error(coqui_dir: Path) -> None:
    path = _write_profile(coqui_dir / "clip.yaml", emotions={"sad": {"speaker_wav": "sad.wav"}})
    with pytest.raises(ModelNotFoundError) as info:
        load_engine(load_voice(str(path)))
    assert "emotions.sad.speaker_wav" in _one_line(info.value) and "sad.wav" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"model": "embedded:en_US-joe-medium"}, "'model' must be a Coqui model name"),
        ({"engine": "piper", "model": "embedded:en_US-joe-medium", "speaker_wav": "a.wav"}, "'speaker_wav'"),
        ({"engine": "piper", "model": "x.onnx", "emotions": {"sad": {"speaker_wav": "a.wav"}}}, "emotions.sad"),
        ({"speaker_wavs": "a.wav"}, "unknown key 'speaker_wavs'"),
    ],
)
def test_coqui_profile_keys_are_validated_naming_file_and_key(
    coqui_dir: Path, overrides: dict[str, object], fragment: str
) -> None:
    path = _write_profile(coqui_dir / "invalid.yaml", **overrides)
    with pytest.raises(VoiceProfileError) as info:
        load_voice(str(path))
    assert fragment in _one_line(info.value) and "invalid.yaml" in str(info.value)


def test_relative_speaker_clips_resolve_against_the_profile_and_names_stay_names(coqui_dir: Path) -> None:
    path = _write_profile(
        coqui_dir / "xtts.yaml",
        model="tts_models/multilingual/multi-dataset/xtts_v2",
        config=None,
        language="en",
        speaker_wav="clips/me.wav",
        emotions={"sad": {"speaker_wav": "clips/me-sad.wav"}},
    )
    profile = load_voice(str(path))
    assert profile.model == "tts_models/multilingual/multi-dataset/xtts_v2"
    assert profile.speaker_wav == str(coqui_dir / "clips" / "me.wav")
    assert profile.prosody_for("sad").speaker_wav == str(coqui_dir / "clips" / "me-sad.wav")
    assert profile.prosody_for("neutral").speaker_wav is None


def test_load_engine_names_the_pip_extra_when_coqui_is_missing(
    coqui_profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "voiceos.tts.coqui", None)  # import fails as if coqui-tts were absent
    with pytest.raises(VoiceosError) as info:
        load_engine(load_voice(str(coqui_profile)))
    assert "pip install 'voiceos[coqui]'" in _one_line(info.value)


# --- the command line ----------------------------------------------------------------------------------------------


def test_say_with_a_coqui_voice_writes_a_wav_at_the_models_rate(
    tmp_path: Path, coqui_profile: Path, no_sound_env: dict[str, str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"tts": {"voice": str(coqui_profile)}, "dialogue": {"max_new_tokens": 12}}), encoding="utf-8"
    )
    out = tmp_path / "reply.wav"
    env = no_sound_env
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voiceos",
            "--config",
            str(config),
            "say",
            "--local",
            "--json",
            "--out",
            str(out),
            "Hi.",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["audio"]["path"] == str(out) and data["audio"]["sample_rate"] == RATE
    info = sf.info(str(out))
    assert info.samplerate == RATE and info.duration > 0.2
    assert abs(info.duration - data["audio"]["seconds"]) < 0.05
