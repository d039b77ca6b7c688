from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceos.audio.files import read_audio, resample, to_pcm16, write_wav
from voiceos.errors import AudioInputError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
JFK = DATA / "speech" / "jfk.flac"
LIBRIVOX = DATA / "speech" / "librivox_cmusphinx" / "audio" / "sense_and_sensibility_01_austen_64kb-0880.wav"


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def assert_one_line_naming(err: pytest.ExceptionInfo[AudioInputError], path: Path, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message.lower()


# -- real files --------------------------------------------------------------------------------------------------


def test_reads_stereo_44k_flac_as_mono_16k_float32() -> None:
    info = sf.info(str(JFK))
    assert (info.samplerate, info.channels) == (44100, 2)  # the interesting case: both need converting
    samples = read_audio(JFK)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(info.duration * 16000, abs=2)
    assert 0.1 < np.abs(samples).max() <= 1.0


def test_reads_librivox_wav_unchanged_at_its_own_rate() -> None:
    samples = read_audio(LIBRIVOX, sample_rate=16000)
    raw, rate = sf.read(str(LIBRIVOX), dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(samples, raw)  # 16 kHz mono in, no resampling: bit-exact


def test_reads_to_other_target_rates() -> None:
    samples = read_audio(LIBRIVOX, sample_rate=22050)
    assert len(samples) == pytest.approx(2.99 * 22050, abs=2)


# -- generated inputs --------------------------------------------------------------------------------------------


def test_stereo_channels_are_averaged(tmp_path: Path) -> None:
    left, right = tone(440, 0.5, 16000, 0.4), tone(440, 0.5, 16000, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_any_rate_is_resampled_keeping_pitch_and_duration(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"tone_{rate}.flac"
    sf.write(str(path), tone(1000, 1.0, rate), rate)
    samples = read_audio(path, sample_rate=16000)
    assert len(samples) == pytest.approx(16000, abs=1)
    assert dominant_hz(samples, 16000) == pytest.approx(1000, abs=2)
    assert np.sqrt(np.mean(samples[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_ogg_vorbis_is_read(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    sf.write(str(path), tone(440, 1.0, 48000), 48000, format="OGG", subtype="VORBIS")
    samples = read_audio(path)
    assert len(samples) == pytest.approx(16000, abs=2)
    assert dominant_hz(samples, 16000) == pytest.approx(440, abs=2)


def test_float_input_beyond_full_scale_is_clipped(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(str(path), np.array([2.0, -3.0, 0.5] * 100, np.float32), 16000, subtype="FLOAT")
    samples = read_audio(path)
    assert samples.max() == 1.0 and samples.min() == -1.0


def test_write_wav_creates_parents_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.wav"
    original = tone(300, 0.25, 16000)
    assert write_wav(path, original, 16000) == path
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(read_audio(path), original, atol=1 / 32767)


def test_to_pcm16_clips_then_scales() -> None:
    pcm = to_pcm16(np.array([0.0, 0.5, 1.0, -1.0, 1.5, -7.0, np.nan], np.float32))
    assert pcm.dtype == np.int16
    assert pcm.tolist() == [0, 16384, 32767, -32767, 32767, -32767, 0]


@pytest.mark.parametrize(("sr_in", "sr_out"), [(16000, 16000), (48000, 16000), (16000, 48000), (44100, 22050)])
def test_resample_length_follows_rate_ratio(sr_in: int, sr_out: int) -> None:
    samples = tone(200, 1.37, sr_in)
    out = resample(samples, sr_in, sr_out)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(len(samples) * sr_out / sr_in, abs=1)
    if sr_in == sr_out:
        assert out is samples or np.array_equal(out, samples)


# -- bad input ---------------------------------------------------------------------------------------------------


def test_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "not found")


def test_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError) as err:
        read_audio(tmp_path)
    assert_one_line_naming(err, tmp_path, "directory")


def test_zero_byte_file_is_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "empty")


def test_valid_header_without_samples_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "no audio samples")


def test_text_file_is_reported_as_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "not a readable audio file")


def test_truncated_flac_is_reported_as_corrupt(tmp_path: Path) -> None:
    whole = tmp_path / "whole.flac"
    sf.write(str(whole), tone(440, 1.0, 16000) + np.random.default_rng(0).normal(0, 0.05, 16000), 16000)
    path = tmp_path / "cut.flac"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "corrupt")


def test_nan_samples_are_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(str(path), np.array([0.1, np.nan, -0.1] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioInputError) as err:
        read_audio(path)
    assert_one_line_naming(err, path, "nan")


def test_too_long_file_is_refused_from_its_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "long.wav"
    sf.write(str(path), np.zeros(16000 * 3, np.float32), 16000)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a file whose header already says it is too long")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioInputError) as err:
        read_audio(path, max_seconds=2.5)
    assert_one_line_naming(err, path, "3.0 s", "2.5 s limit")


def test_length_limit_allows_files_up_to_the_limit() -> None:
    assert len(read_audio(LIBRIVOX, max_seconds=3.0)) == pytest.approx(2.99 * 16000, abs=1)
