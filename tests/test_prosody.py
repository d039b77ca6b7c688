"""Pitch prosody: PSOLA pitch shift / range scaling (voiceos.tts.prosody), and every emotion of voices/joe.yaml as
heard through the real Piper voice, measured against neutral."""

from __future__ import annotations

import math
import time

import numpy as np
import parselmouth
import pytest
import soxr

import voiceos.tts.piper as piper_module
import voiceos.tts.prosody as prosody_module
from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import resample
from voiceos.textnorm import word_error_rate
from voiceos.tts import load_voice
from voiceos.tts.prosody import ProsodyStats, measure, shift_pitch

SR = 22050
SENTENCE = "The weather is lovely today, so let's go for a walk in the park."
EMOTIONS = load_voice("joe").emotion_names
# Piper samples its noise afresh on every call, so each emotion is measured over this many syntheses, from an engine
# seeded with SEED (the same audio in every run). Every test below passed for each of seeds 0-15 at 3 takes; at 2
# takes one seed in 12 failed one of them (the spread of the mean was too wide for the bounds: calm moved -0.59 st
# to -1.27 st over the seeds, wanted -1.0 st within a factor of 2, and once -0.46 st in CI).
TAKES = 3
SEED = 0

# --- a synthetic vowel: harmonics of a (possibly gliding) F0 under an /a/-like formant envelope -------------------

FORMANTS_HZ = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0))  # (centre, bandwidth)


def _envelope(freq: np.ndarray) -> np.ndarray:
    gain = np.ones_like(freq)
    for centre, bandwidth in FORMANTS_HZ:
        gain /= np.sqrt((1 - (freq / centre) ** 2) ** 2 + (freq * bandwidth / centre**2) ** 2)
    return gain


def vowel(f0_hz: float | np.ndarray, seconds: float = 1.0, peak: float = 0.5) -> np.ndarray:
    f0 = np.broadcast_to(np.asarray(f0_hz, dtype=np.float64), (round(seconds * SR),))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    out = np.zeros_like(phase)
    for k in range(1, int(SR / 2 / f0.min())):
        out += np.where(k * f0 < SR / 2 - 500, _envelope(k * f0) * np.sin(k * phase), 0.0)
    return (peak * out / np.abs(out).max()).astype(np.float32)


def _rms_db(audio: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(audio, dtype=np.float64))))


def _formants(audio: np.ndarray) -> tuple[float, float]:
    """Median F1, F2 (Burg) over the middle of the signal."""
    track = parselmouth.Sound(audio.astype(np.float64), SR).to_formant_burg(
        max_number_of_formants=5, maximum_formant=5000
    )
    times = np.linspace(0.2, 0.7, 30) * len(audio) / SR
    f1, f2 = (float(np.nanmedian([track.get_value_at_time(i, t) for t in times])) for i in (1, 2))
    return f1, f2


def _semitones(ratio: float) -> float:
    return 12 * math.log2(ratio)


# --- shift_pitch on synthetic signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("semitones", [3.0, -2.0])
def test_shift_moves_f0_by_the_semitone_ratio_and_keeps_length_and_level(semitones: float) -> None:
    before = vowel(120.0)
    after = shift_pitch(before, SR, semitones, 1.0)
    ratio = measure(after, SR).median_f0_hz / measure(before, SR).median_f0_hz
    assert ratio == pytest.approx(2 ** (semitones / 12), rel=0.03)
    assert after.dtype == np.float32 and after.shape == before.shape
    assert _rms_db(after) == pytest.approx(_rms_db(before), abs=0.5)


def test_shift_keeps_the_formants_where_resampling_would_move_them() -> None:
    before = vowel(120.0)
    f1, f2 = _formants(before)
    shifted_f1, shifted_f2 = _formants(shift_pitch(before, SR, 3.0, 1.0))
    assert shifted_f1 == pytest.approx(f1, rel=0.03)
    assert shifted_f2 == pytest.approx(f2, rel=0.03)
    # The naive way (play it faster) moves the formants up with the pitch; that is what PSOLA avoids.
    resampled_f1, _ = _formants(soxr.resample(before, SR, SR / 2 ** (3 / 12)))
    assert resampled_f1 > 1.1 * f1


@pytest.mark.parametrize("range_factor", [0.5, 1.5])
def test_range_factor_scales_f0_excursions_around_the_median(range_factor: float) -> None:
    # F0 swings +-3 semitones around 110 Hz once a second.
    glide = vowel(110.0 * 2 ** (3 * np.sin(2 * np.pi * np.arange(2 * SR) / SR) / 12), seconds=2.0)
    before, after = measure(glide, SR), measure(shift_pitch(glide, SR, 0.0, range_factor), SR)
    assert after.f0_range_semitones / before.f0_range_semitones == pytest.approx(range_factor, rel=0.15)
    assert abs(_semitones(after.median_f0_hz / before.median_f0_hz)) < 0.5


def test_unvoiced_noise_passes_through_unchanged() -> None:
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR // 2)).astype(np.float32)
    audio = np.concatenate([noise, vowel(120.0, seconds=0.5), noise])
    out = shift_pitch(audio, SR, 3.0, 1.3)
    head = slice(0, SR // 2 - 2000)  # stay clear of the vowel's onset
    assert np.corrcoef(audio[head], out[head])[0, 1] > 0.999
    assert _rms_db(out[head]) == pytest.approx(_rms_db(audio[head]), abs=0.5)
    assert measure(out, SR).median_f0_hz == pytest.approx(120.0 * 2 ** (3 / 12), rel=0.03)


def test_no_pitch_change_returns_the_input_untouched() -> None:
    audio = vowel(120.0)
    assert shift_pitch(audio, SR, 0.0, 1.0) is audio


@pytest.mark.parametrize(
    "audio", [np.zeros(SR, dtype=np.float32), vowel(120.0, seconds=0.03), np.zeros(0, dtype=np.float32)]
)
def test_silence_and_too_short_audio_come_back_unchanged(audio: np.ndarray) -> None:
    out = shift_pitch(audio, SR, 2.0, 1.2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, audio)


@pytest.mark.parametrize(("semitones", "range_factor"), [(math.nan, 1.0), (1.0, -0.5), (math.inf, 1.0)])
def test_invalid_pitch_change_is_rejected(semitones: float, range_factor: float) -> None:
    with pytest.raises(ValueError, match="invalid pitch change"):
        shift_pitch(vowel(120.0), SR, semitones, range_factor)


def test_praat_failure_gives_back_the_unshifted_audio(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def broken(*args, **kwargs):
        raise parselmouth.PraatError("Sound: analysis failed")

    monkeypatch.setattr(prosody_module, "_psola", broken)
    audio = vowel(120.0)
    assert shift_pitch(audio, SR, 2.0, 1.0) is audio
    assert "pitch shift skipped" in caplog.text


def test_shift_pitch_runs_well_under_real_time() -> None:
    audio = vowel(100.0 * 2 ** (2 * np.sin(2 * np.pi * np.arange(3 * SR) / SR / 1.5) / 12), seconds=3.0)
    shift_pitch(audio, SR, 1.0, 1.2)  # warm-up
    start = time.perf_counter()
    shift_pitch(audio, SR, 3.0, 1.5)
    ms_per_s = 1000 * (time.perf_counter() - start) / 3.0
    print(f"\nshift_pitch: {ms_per_s:.1f} ms per second of audio")
    assert ms_per_s < 250


def test_measure_reports_f0_range_level_and_speech_duration() -> None:
    tone = vowel(150.0, seconds=1.0, peak=0.4)
    silence = np.zeros(SR // 4, dtype=np.float32)
    stats = measure(np.concatenate([silence, tone, silence]), SR)
    assert stats.median_f0_hz == pytest.approx(150.0, rel=0.01)
    assert stats.f0_range_semitones < 0.2
    assert stats.rms_db == pytest.approx(_rms_db(tone), abs=0.3)
    assert stats.duration_s == pytest.approx(1.0, abs=0.03)


# --- the real voice: every emotion of voices/joe.yaml against neutral ---------------------------------------------


@pytest.fixture(scope="module")
def takes(seeded_tts) -> dict[str, tuple[ProsodyStats, np.ndarray]]:
    """Per emotion: the stats of SENTENCE averaged over TAKES syntheses, and the first take's audio.

    From a freshly seeded engine, so every run measures the same audio (see ``seeded_tts``); the bounds below hold
    for each of the 16 seeds tried, not only for this one (see TAKES).
    """
    engine = seeded_tts(SEED)
    assert engine.profile.name == "joe"
    results = {}
    for emotion in EMOTIONS:
        audios = [engine.synthesize_all(SENTENCE, emotion) for _ in range(TAKES)]
        stats = [measure(audio, engine.sample_rate) for audio in audios]
        mean = ProsodyStats(
            *(float(np.mean([getattr(s, f) for s in stats])) for f in ProsodyStats.__dataclass_fields__)
        )
        results[emotion] = (mean, audios[0])
    print(f"\n{'emotion':<11} {'F0 Hz':>6} {'range st':>8} {'rms dB':>7} {'dur s':>6}")
    for emotion, (s, _) in results.items():
        print(f"{emotion:<11} {s.median_f0_hz:6.1f} {s.f0_range_semitones:8.2f} {s.rms_db:7.2f} {s.duration_s:6.2f}")
    return results


def _versus_neutral(takes, emotion: str) -> tuple[ProsodyStats, ProsodyStats]:
    return takes[emotion][0], takes["neutral"][0]


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_emotion_moves_median_f0_by_its_pitch_semitones(tts_engine, takes, emotion: str) -> None:
    target = tts_engine.profile.prosody_for(emotion).pitch_semitones
    mine, neutral = _versus_neutral(takes, emotion)
    moved = _semitones(mine.median_f0_hz / neutral.median_f0_hz)
    if abs(target) >= 1.0:
        assert math.copysign(1, moved) == math.copysign(1, target), f"moved {moved:+.2f} st, wanted {target:+.1f}"
        assert 0.5 * abs(target) <= abs(moved) <= 1.5 * abs(target), f"moved {moved:+.2f} st, wanted {target:+.1f}"
    else:  # too small to tell from Piper's own variation: only no big move
        assert abs(moved - target) <= 1.0, f"moved {moved:+.2f} st, wanted {target:+.1f}"


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_emotion_scales_f0_range_by_its_pitch_range(tts_engine, takes, emotion: str) -> None:
    target = tts_engine.profile.prosody_for(emotion).pitch_range
    mine, neutral = _versus_neutral(takes, emotion)
    ratio = mine.f0_range_semitones / neutral.f0_range_semitones
    # Piper's own intonation varies ~5-8 % per take, so: the direction, and no overshoot past 2.5x the target
    # (in log terms); a range within 0.2 of 1 only must not move much.
    if round(abs(target - 1.0), 6) >= 0.2:
        assert (ratio - 1.0) * (target - 1.0) > 0, f"range x{ratio:.2f}, wanted x{target:.2f}"
        assert math.log(ratio) / math.log(target) <= 2.5, f"range x{ratio:.2f}, wanted x{target:.2f}"
    else:
        assert 0.7 <= ratio <= 1.4, f"range x{ratio:.2f}, wanted x{target:.2f}"


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_emotion_changes_speech_duration_opposite_to_its_rate(tts_engine, takes, emotion: str) -> None:
    rate = tts_engine.profile.prosody_for(emotion).rate
    mine, neutral = _versus_neutral(takes, emotion)
    ratio = mine.duration_s / neutral.duration_s
    # Piper's durations vary 2-3 % per take, a rate change shows up at 60-70 % strength, and the emotion's
    # expressiveness (noise_w) works against it (steadier = shorter), so the profile's small rate changes are lost
    # in the noise: only rates 15 % or more off neutral must show their direction in every run; the others must at
    # least land between neutral and 1/rate, give or take the noise. The test below checks the trend over all.
    if round(abs(rate - 1.0), 6) >= 0.15:
        assert (ratio - 1.0) * (rate - 1.0) < 0, f"duration x{ratio:.3f} at rate {rate}"
    assert min(1.0, 1 / rate) - 0.05 <= ratio <= max(1.0, 1 / rate) + 0.05, f"duration x{ratio:.3f} at rate {rate}"


def test_speech_duration_falls_as_the_emotions_rate_rises(tts_engine, takes) -> None:
    log_rate = np.log([tts_engine.profile.prosody_for(emotion).rate for emotion in EMOTIONS])
    log_duration = np.log([takes[emotion][0].duration_s for emotion in EMOTIONS])
    slope = float(np.polyfit(log_rate, log_duration, 1)[0])  # -1 would be duration exactly 1/rate
    assert -1.5 <= slope <= -0.25, f"log duration / log rate slope {slope:.2f}"


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_emotion_changes_loudness_by_its_energy_db(tts_engine, takes, emotion: str) -> None:
    energy_db = tts_engine.profile.prosody_for(emotion).energy_db
    mine, neutral = _versus_neutral(takes, emotion)
    change = mine.rms_db - neutral.rms_db
    assert abs(change - energy_db) <= 1.5, f"level {change:+.2f} dB, wanted {energy_db:+.1f}"
    if abs(energy_db) >= 1.0:
        assert change * energy_db > 0, f"level {change:+.2f} dB, wanted {energy_db:+.1f}"


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_every_emotion_stays_intelligible_to_whisper(tts_engine, transcriber, takes, emotion: str) -> None:
    audio = takes[emotion][1]
    heard = transcriber.transcribe(resample(audio, tts_engine.sample_rate, SAMPLE_RATE)).text
    wer = word_error_rate(SENTENCE, heard)
    assert wer <= 0.25, f"{emotion}: WER {wer:.2f}, heard {heard!r}"


# --- the Piper engine applies it per sentence ----------------------------------------------------------------------


def test_pitch_is_applied_to_each_sentence_as_soon_as_it_is_synthesized(
    tts_engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    synthesized, shifted = [], []
    original_synth, original_shift = tts_engine.voice.phoneme_ids_to_audio, piper_module.shift_pitch

    def counting_synth(*args, **kwargs):
        synthesized.append(1)
        return original_synth(*args, **kwargs)

    def counting_shift(audio, sample_rate, semitones, range_factor):
        shifted.append((audio.size, semitones, range_factor))
        return original_shift(audio, sample_rate, semitones, range_factor)

    monkeypatch.setattr(tts_engine.voice, "phoneme_ids_to_audio", counting_synth)
    monkeypatch.setattr(piper_module, "shift_pitch", counting_shift)
    excited = tts_engine.profile.prosody_for("excited")
    stream = tts_engine.synthesize("Good morning. The kettle is on.", "excited")
    first = next(stream)
    assert (len(synthesized), len(shifted)) == (1, 1)
    assert shifted[0] == (first.size, excited.pitch_semitones, excited.pitch_range)
    second = next(stream)
    assert (len(synthesized), len(shifted)) == (2, 2)
    pause = round(excited.pause_ms * tts_engine.sample_rate / 1000)
    assert second.size == pause + shifted[1][0], "the pause is added after the shift, and stays silent"
    assert np.all(second[:pause] == 0.0)
    assert list(stream) == []


def test_neutral_emotion_skips_pitch_processing(tts_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("shift_pitch called for an emotion with no pitch change")

    monkeypatch.setattr(piper_module, "shift_pitch", fail)
    assert tts_engine.synthesize_all("Hello there.", "neutral").size > 0
