"""Audio files in and out: read any format libsndfile knows as mono float32 at one rate, write 16-bit WAV."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voiceos.audio.rate import SAMPLE_RATE
from voiceos.errors import AudioInputError

log = logging.getLogger(__name__)

__all__ = ["read_audio", "resample", "to_pcm16", "write_wav"]

_BLOCK_FRAMES = 1 << 16


def _one_line(text: object) -> str:
    return " ".join(str(text).split()).removeprefix("Error : ")


def _open(path: Path) -> sf.SoundFile:
    if not path.exists():
        raise AudioInputError(f"{path}: audio file not found")
    if path.is_dir():
        raise AudioInputError(f"{path}: is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioInputError(f"{path}: permission denied, cannot read the audio file")
    try:
        return sf.SoundFile(str(path))
    except sf.LibsndfileError as err:
        if path.stat().st_size == 0:
            raise AudioInputError(f"{path}: empty file (0 bytes), no audio in it") from None
        reason = _one_line(getattr(err, "error_string", "") or err)
        raise AudioInputError(f"{path}: not a readable audio file ({reason})") from None
    except OSError as err:
        raise AudioInputError(f"{path}: cannot open ({_one_line(err.strerror or err)})") from None
    except (RuntimeError, TypeError, ValueError) as err:
        raise AudioInputError(f"{path}: not a readable audio file ({_one_line(err)})") from None


def read_audio(
    path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None
) -> np.ndarray:
    """Decode ``path``, downmix to mono, resample to ``sample_rate``: float32 in [-1, 1].

    The length limit is checked against the header before decoding, and again while decoding (some formats only
    estimate their length), so an oversized file is never loaded whole.
    """
    path = Path(path)
    with _open(path) as f:
        rate, frames, channels = f.samplerate, f.frames, f.channels
        if rate <= 0:
            raise AudioInputError(f"{path}: invalid sample rate {rate} in the header")
        if max_seconds is not None and 0 < frames < 2**62 and frames / rate > max_seconds:
            raise AudioInputError(f"{path}: audio is {frames / rate:.1f} s long, over the {max_seconds:g} s limit")
        limit = None if max_seconds is None else int(max_seconds * rate) + 1
        blocks: list[np.ndarray] = []
        total = 0
        try:
            while True:
                block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                if not len(block):
                    break
                blocks.append(block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0])
                total += len(block)
                if limit is not None and total > limit:
                    raise AudioInputError(f"{path}: audio is longer than the {max_seconds:g} s limit")
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioInputError(f"{path}: corrupt audio, decoding failed ({_one_line(err)})") from None
    if total == 0:
        raise AudioInputError(f"{path}: contains no audio samples")
    samples = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    if not np.all(np.isfinite(samples)):
        raise AudioInputError(f"{path}: corrupt audio, contains NaN or infinite samples")
    np.clip(samples, -1.0, 1.0, out=samples)
    log.debug("read %s: %d frames at %d Hz, %d channel(s)", path, total, rate, channels)
    return resample(samples, rate, sample_rate)


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Mono float32 resampling with soxr's high-quality filter; returns the input unchanged when the rates match."""
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    samples = np.asarray(samples, dtype=np.float32)
    if sr_in == sr_out or samples.size == 0:
        return samples
    out = soxr.resample(samples, sr_in, sr_out, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to int16: clipped first, then scaled by 32767 (so +1 and -1 map symmetrically)."""
    flt = np.clip(np.nan_to_num(np.asarray(samples, dtype=np.float32)), -1.0, 1.0)
    return np.round(flt * 32767.0).astype(np.int16)


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM WAV (mono for 1-D input, one column per channel for 2-D), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), to_pcm16(samples), int(sample_rate), subtype="PCM_16", format="WAV")
    return path
