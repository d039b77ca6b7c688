"""The ASR tail on hard speech: how often Whisper's temperature fallback re-decodes, what it costs, what it buys.

Issue #21 saw the ASR left after the end of a turn take 1-1.8 s on hard utterances and named the temperature
fallback as the first suspect: when a greedy decode looks bad (compression ratio > 2.4, or average log-probability
< -1 on speech), faster-whisper decodes the clip again at temperature 0.2, 0.4, ... 1.0, up to five more times.
The clean recordings never trigger it (benchmarks/asr_wer.py), so this makes hard ones from them: the 12 real
recordings of ../shared/data/speech with white noise at 10, 5 and 0 dB SNR (seeded), and sped up 1.25x. For each,
tiny.en int8 on this CPU at beam 1, in one run, side by side:
- the full fallback (faster-whisper's default temperatures, voiceos's setting until this benchmark),
- the fallback capped at one retry (temperatures 0.0 and 0.2), and
- none (temperature 0 only),
reporting corpus WER per condition, milliseconds per clip (median, p90, max) and how many clips re-decoded.

    .venv/bin/python benchmarks/asr_tail.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from asr_wer import clips
from faster_whisper import WhisperModel

from voiceos.audio.files import resample
from voiceos.models import resolve_whisper_model
from voiceos.textnorm import word_error_rate

FULL = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SETTINGS = {"full fallback (6 temperatures)": FULL, "one retry (0.0, 0.2)": FULL[:2], "no fallback (0.0)": FULL[:1]}


def with_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    power = float(np.mean(audio**2))
    noise = np.random.default_rng(seed).normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(audio))
    return (audio + noise).astype(np.float32)


def conditions() -> dict[str, list[tuple[np.ndarray, str]]]:
    base = clips()
    made = {"clean": [(audio, text) for _, audio, text in base]}
    for snr in (10, 5, 0):
        made[f"noise {snr} dB"] = [(with_noise(audio, snr, i), text) for i, (_, audio, text) in enumerate(base)]
    made["fast 1.25x"] = [(resample(audio, 20000, 16000), text) for _, audio, text in base]
    return made


def decode(model: WhisperModel, audio: np.ndarray, temperatures: tuple[float, ...]) -> tuple[str, float, bool]:
    start = time.perf_counter()
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, vad_filter=False, condition_on_previous_text=False, temperature=temperatures
    )
    segments = list(segments)
    ms = (time.perf_counter() - start) * 1000
    return " ".join(s.text.strip() for s in segments), ms, any(s.temperature > 0 for s in segments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    model = WhisperModel(resolve_whisper_model("tiny.en"), device="cpu", compute_type="int8")
    results = {}
    for condition, cases in conditions().items():
        for name, temperatures in SETTINGS.items():
            refs, hyps, times, retried = [], [], [], 0
            for audio, text in cases:
                hyp, ms, again = decode(model, audio, temperatures)
                refs.append(text)
                hyps.append(hyp)
                times.append(ms)
                retried += again
            wer = word_error_rate(" ".join(refs), " ".join(hyps))  # corpus WER: all words of the condition
            row = {
                "wer": round(wer, 3),
                "ms_p50": round(float(np.median(times))),
                "ms_p90": round(float(np.percentile(times, 90))),
                "ms_max": round(max(times)),
                "re_decoded": f"{retried}/{len(cases)}",
            }
            results[f"{condition} | {name}"] = row
            print(f"{condition:12s} | {name:32s} | " + " ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
