"""Pitch prosody for synthesized speech: shift and widen/flatten the intonation, keeping duration and formants.

Piper has no pitch control, so the emotion's ``pitch_semitones`` and ``pitch_range`` are applied afterwards to each
sentence with Praat's PSOLA (pitch-synchronous overlap-add, through ``praat-parselmouth``): Praat analyses the F0
contour, the contour is rewritten, and the periods are re-spaced to the new contour. Unlike resampling this keeps
the duration and the formants (the voice does not turn into a chipmunk or a giant), and unvoiced sounds and
silence pass through unchanged.

The contour is rewritten in log frequency around the sentence's median F0 (``m``)::

    f' = m * (f / m) ** range_factor * 2 ** (semitones / 12)

so ``range_factor`` scales every excursion from the median (in semitones) and ``semitones`` then moves the whole
contour. :func:`measure` gives the numbers the tests check (median F0, F0 range, level, duration).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import parselmouth
from parselmouth.praat import call

log = logging.getLogger(__name__)

# F0 search range of the first, coarse pass (any adult or child voice). The second pass searches only this voice's
# range, after De Looze & Hirst's two-pass method: ceiling 1.9 x the 65th percentile, floor 0.6 x the 35th (they
# use 0.72; lower keeps the low tail of a flattened-then-lowered or widened contour). This drops the octave jumps
# and the fricatives that the wide search takes for 400-600 Hz voicing.
PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 600.0
_FLOOR_FACTOR, _CEILING_FACTOR = 0.6, 1.9
_LOWEST_FLOOR_HZ = 40.0
# The shortest input Praat's pitch analysis accepts: three periods of the lowest floor, with margin (~90 ms).
_MIN_DURATION_S = 3.5 / _LOWEST_FLOOR_HZ
_TIME_STEP_S = 0.01
# Rewritten F0 is kept inside a range PSOLA handles cleanly.
_F0_MIN_HZ = 40.0
_F0_MAX_HZ = 1000.0
# The most the level is raised to undo PSOLA's level change (2x, +6 dB).
_MAX_LEVEL_GAIN = 2.0


def pitch_unchanged(semitones: float, range_factor: float) -> bool:
    """True when ``shift_pitch`` would leave the audio unchanged (no pitch processing is needed)."""
    return semitones == 0.0 and range_factor == 1.0


def shift_pitch(audio: np.ndarray, sample_rate: int, semitones: float, range_factor: float = 1.0) -> np.ndarray:
    """Return ``audio`` (float32 mono) with its F0 range scaled by ``range_factor`` and then shifted by ``semitones``.

    The result has the same length, sample rate and RMS level (never past full scale); unvoiced parts keep their
    waveform. With ``semitones == 0`` and ``range_factor == 1``, audio too short to analyse, no voiced frames, or
    input Praat fails on (logged), the input comes back as it is.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        audio = audio.reshape(-1)
    if not math.isfinite(semitones) or not math.isfinite(range_factor) or range_factor < 0:
        raise ValueError(f"invalid pitch change: semitones={semitones!r}, range_factor={range_factor!r}")
    if pitch_unchanged(semitones, range_factor) or audio.size < _MIN_DURATION_S * sample_rate:
        return audio
    try:
        return _psola(audio, sample_rate, semitones, range_factor)
    except parselmouth.PraatError as err:  # odd input Praat cannot analyse: speak it unshifted rather than not at all
        log.warning("pitch shift skipped for a %.2f s chunk: %s", audio.size / sample_rate, str(err).strip()[:200])
        return audio


def _psola(audio: np.ndarray, sample_rate: int, semitones: float, range_factor: float) -> np.ndarray:
    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=float(sample_rate))
    bounds = _voice_pitch_bounds(sound)
    if bounds is None:
        return audio
    manipulation = call(sound, "To Manipulation", _TIME_STEP_S, *bounds)
    tier = call(manipulation, "Extract pitch tier")
    f0 = _tier_frequencies(tier)
    if f0.size == 0:
        return audio
    median = float(np.exp(np.median(np.log(f0))))
    factor = 2.0 ** (semitones / 12.0)
    formula = f"min({_F0_MAX_HZ}, max({_F0_MIN_HZ}, {median!r} * (self / {median!r}) ^ {range_factor!r} * {factor!r}))"
    call(tier, "Formula", formula)
    call([manipulation, tier], "Replace pitch tier")
    out = call(manipulation, "Get resynthesis (overlap-add)").values.reshape(-1).astype(np.float32)
    if out.size != audio.size:  # Praat keeps the sampling grid; guard against an off-by-one anyway
        out = out[: audio.size] if out.size > audio.size else np.pad(out, (0, audio.size - out.size))
    return _match_level(out, audio)


def _match_level(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Give ``out`` the RMS level of ``ref``, never past full scale.

    PSOLA changes the level a little: lowering F0 spaces the periods further apart (about -0.4 dB at -1.5
    semitones), and a flatter contour pulls the loud stressed syllables down most, so a sentence can lose up to
    ~1.5 dB. Loudness is the emotion's ``energy_db``, so the sentence gets its level back here.
    """
    rms_out = float(np.sqrt(np.mean(np.square(out, dtype=np.float64))))
    peak_out = float(np.max(np.abs(out)))
    if rms_out <= 0.0 or peak_out <= 0.0:
        return out
    rms_ref = float(np.sqrt(np.mean(np.square(ref, dtype=np.float64))))
    gain = min(rms_ref / rms_out, _MAX_LEVEL_GAIN, 1.0 / peak_out)
    out *= np.float32(gain)
    return np.clip(out, -1.0, 1.0, out=out)


def _voice_pitch_bounds(sound: parselmouth.Sound) -> tuple[float, float] | None:
    """The F0 search range of this voice (floor, ceiling) from a coarse first pass; None when nothing is voiced."""
    f0 = _voiced(sound.to_pitch(time_step=_TIME_STEP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ))
    if f0.size == 0:
        return None
    q35, q65 = np.percentile(f0, [35, 65])
    return max(_LOWEST_FLOOR_HZ, _FLOOR_FACTOR * float(q35)), min(PITCH_CEILING_HZ, _CEILING_FACTOR * float(q65))


def _voiced(pitch: parselmouth.Pitch) -> np.ndarray:
    f0 = np.asarray(pitch.selected_array["frequency"], dtype=np.float64)
    return f0[f0 > 0]


def _tier_frequencies(tier: parselmouth.Data) -> np.ndarray:
    if call(tier, "Get number of points") == 0:
        return np.zeros(0)
    table = call(call(tier, "Down to TableOfReal", "Hertz"), "To Matrix")
    f0 = np.asarray(table.values, dtype=np.float64)[:, 1]
    return f0[np.isfinite(f0) & (f0 > 0)]


@dataclass(frozen=True)
class ProsodyStats:
    """What a listener hears of a stretch of speech, in numbers."""

    median_f0_hz: float  # median F0 of the voiced frames (nan when nothing is voiced)
    f0_range_semitones: float  # 90th minus 10th percentile of F0, in semitones (nan when nothing is voiced)
    rms_db: float  # level of the active (non-silent) part, dB re full scale
    duration_s: float  # length of the speech, leading and trailing silence excluded


def measure(audio: np.ndarray, sample_rate: int) -> ProsodyStats:
    """Measure F0 (Praat's autocorrelation pitch), F0 range, level and speech duration of ``audio``."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    f0 = voiced_f0(audio, sample_rate)
    if f0.size:
        median = float(np.median(f0))
        p10, p90 = np.percentile(f0, [10, 90])
        spread = float(12.0 * np.log2(p90 / p10))
    else:
        median = spread = float("nan")
    frame = max(1, round(0.02 * sample_rate))
    n = audio.size // frame
    if n == 0:
        return ProsodyStats(median, spread, float("-inf"), 0.0)
    power = np.mean(np.square(audio[: n * frame].reshape(n, frame)), axis=1)
    active = power > power.max() * 10.0 ** (-40.0 / 10.0) if power.max() > 0 else np.zeros(n, dtype=bool)
    if not active.any():
        return ProsodyStats(median, spread, float("-inf"), 0.0)
    rms_db = float(10.0 * np.log10(np.mean(power[active])))
    first, last = np.flatnonzero(active)[[0, -1]]
    return ProsodyStats(median, spread, rms_db, float((last - first + 1) * frame / sample_rate))


def voiced_f0(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """F0 in Hz of each voiced 10 ms frame of ``audio``: Praat's autocorrelation pitch, two passes (see above)."""
    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    if audio.size < _MIN_DURATION_S * sample_rate:
        return np.zeros(0)
    sound = parselmouth.Sound(audio, sampling_frequency=float(sample_rate))
    bounds = _voice_pitch_bounds(sound)
    if bounds is None:
        return np.zeros(0)
    return _voiced(sound.to_pitch(time_step=_TIME_STEP_S, pitch_floor=bounds[0], pitch_ceiling=bounds[1]))
