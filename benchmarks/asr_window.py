"""Does Whisper (tiny.en) transcribe the same when its encoder runs on a window shorter than 30 s?

faster-whisper pads every call to 3000 mel frames; CTranslate2 also accepts fewer (whisper.cpp calls this
``audio_ctx``). This trims the padded features to the clip plus a margin before encoding and compares each transcript
with the 30 s one, over the real recordings in ../shared/data/speech. Result (2026-11-27) in benchmarks/README.md:
much faster, but transcripts change, so voiceos keeps the 30 s window.

    .venv/bin/python benchmarks/asr_window.py
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel

from voiceos.audio.files import read_audio
from voiceos.models import resolve_whisper_model
from voiceos.textnorm import normalize_words

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
MARGINS_S = (0.5, 1.0, 2.0, 4.0)


class WindowedWhisper(WhisperModel):
    """faster-whisper's model, its encoder fed at most ``window`` mel frames (None: the usual 3000)."""

    window: int | None = None

    def encode(self, features):
        if self.window is not None and features.shape[-1] > self.window:
            features = features[..., : self.window]
        return super().encode(features)


def clips() -> list[tuple[str, np.ndarray]]:
    with open(SPEECH / "librivox_cmusphinx" / "manifest.csv") as manifest:
        rows = list(csv.DictReader(manifest))
    found = [(row["path"], read_audio(SPEECH / "librivox_cmusphinx" / row["path"], 16000)) for row in rows]
    return [*found, ("jfk.flac", read_audio(SPEECH / "jfk.flac", 16000))]


def transcribe(model: WindowedWhisper, audio: np.ndarray, window: int | None) -> tuple[str, float]:
    model.window = window
    start = time.perf_counter()
    options = {"language": "en", "beam_size": 1, "vad_filter": False, "condition_on_previous_text": False}
    segments, _ = model.transcribe(audio, **options)
    text = " ".join(s.text.strip() for s in segments)
    return text, (time.perf_counter() - start) * 1000


def main() -> None:
    model = WindowedWhisper(str(resolve_whisper_model("tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    times: dict[str, list[float]] = {"30 s": [], **{f"+{m} s": [] for m in MARGINS_S}}
    same = dict.fromkeys(MARGINS_S, 0)
    for name, audio in clips():
        full, elapsed = transcribe(model, audio, None)
        times["30 s"].append(elapsed)
        frames = len(audio) // 160 + 1
        for margin in MARGINS_S:
            window = min(3000, frames + int(margin * 100))
            text, elapsed = transcribe(model, audio, window + window % 2)
            times[f"+{margin} s"].append(elapsed)
            if normalize_words(text) == normalize_words(full):
                same[margin] += 1
            else:
                print(f"{name} (+{margin} s): {full!r} -> {text[:120]!r}")
    count = len(times["30 s"])
    for key, values in times.items():
        kept = "" if key == "30 s" else f", same transcript {same[float(key[1:-2])]}/{count}"
        print(f"window {key}: median {np.median(values):.0f} ms{kept}")


if __name__ == "__main__":
    main()
