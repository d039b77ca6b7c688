"""Whisper settings judged by word error rate on the real speech of ../shared/data/speech, with their time.

Issue #21 allows a faster setting when corpus WER rises by no more than 0.01. Compared, each over the 12 real
recordings (LibriVox, CMU cards/goforward, jfk.flac), tiny.en int8 on this CPU, in one run:
- the 30 s window (faster-whisper's own) at beam 1 (voiceos's default) and beam 5 (faster-whisper's default);
- a fixed shorter encoder window (the padded features trimmed to N s before encoding, as benchmarks/asr_window.py
  does) at 10, 15 and 20 s, the clip always inside it;
- temperature fallback off (one greedy pass at temperature 0: a hard clip cannot be re-decoded 5 more times).

    .venv/bin/python benchmarks/asr_wer.py
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from asr_window import WindowedWhisper

from voiceos.audio.files import read_audio
from voiceos.models import resolve_whisper_model
from voiceos.textnorm import normalize_words, word_error_rate

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"
PASSES = 3  # times per clip and setting; the median is kept


def clips() -> list[tuple[str, np.ndarray, str]]:
    folder = SPEECH / "librivox_cmusphinx"
    with open(folder / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = [(r["path"], read_audio(folder / r["path"], 16000), r["transcript"]) for r in rows]
    return [*found, ("jfk.flac", read_audio(SPEECH / "jfk.flac", 16000), JFK)]


def run(model: WindowedWhisper, audio: np.ndarray, window_s: float | None, **options) -> tuple[str, float]:
    frames = len(audio) // 160 + 1
    model.window = None if window_s is None else max(int(window_s * 100), frames + 100)
    times, text = [], ""
    for _ in range(PASSES):
        start = time.perf_counter()
        settings = {"language": "en", "vad_filter": False, "condition_on_previous_text": False, **options}
        segments, _ = model.transcribe(audio, **settings)
        text = " ".join(s.text.strip() for s in segments)
        times.append((time.perf_counter() - start) * 1000)
    return text, float(np.median(times))


SETTINGS = {
    "30 s window, beam 1 (voiceos)": (None, {"beam_size": 1}),
    "30 s window, beam 5": (None, {"beam_size": 5}),
    "30 s window, beam 1, no temperature fallback": (None, {"beam_size": 1, "temperature": 0.0}),
    "20 s window, beam 1": (20.0, {"beam_size": 1}),
    "15 s window, beam 1": (15.0, {"beam_size": 1}),
    "10 s window, beam 1": (10.0, {"beam_size": 1}),
    "10 s window, beam 5": (10.0, {"beam_size": 5}),
}


def main() -> None:
    model = WindowedWhisper(str(resolve_whisper_model("tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    data = clips()
    print("| setting | corpus WER | median ms per clip | max ms |")
    print("|---|---|---|---|")
    for label, (window, options) in SETTINGS.items():
        errors, words, times = 0.0, 0, []
        for _name, audio, reference in data:
            text, ms = run(model, audio, window, **options)
            n = len(normalize_words(reference))
            errors += word_error_rate(reference, text) * n
            words += n
            times.append(ms)
        print(f"| {label} | {errors / words:.3f} | {np.median(times):.0f} | {max(times):.0f} |")


if __name__ == "__main__":
    main()
