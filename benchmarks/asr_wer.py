"""ASR engines and settings judged by word error rate on every real recording in ../shared/data/speech, with their
time per clip.

The recordings: speechocean762_train (375 non-native read prompts, one word to full sentences), fsdd_dev (300 single
spoken digits, 8 kHz), librivox_cmusphinx (11 utterances) and jfk.flac. Each setting transcribes every clip once,
on this CPU, through voiceos's own engines (``voiceos.asr.load_transcriber``), in one run; WER is the corpus WER
(word errors over reference words, text normalised by voiceos.textnorm) per set, over all, and over the single
words (the digits and the one-word prompts). The ms are per clip: p50 and p90 over the clips.

    .venv/bin/python benchmarks/asr_wer.py [--settings NAME ...] [--threads 2] [--json out.json] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from voiceos.asr import load_transcriber
from voiceos.audio.files import read_audio
from voiceos.config import AsrOptions
from voiceos.textnorm import normalize_words, word_error_rate

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
SETS = ("speechocean762_train", "fsdd_dev", "librivox_cmusphinx")
JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"

WHISPER = AsrOptions(engine="whisper", beam_size=1, temperature_fallback=False, loop_guard=False)
MOONSHINE = AsrOptions(engine="moonshine", max_tokens_per_s=50.0, min_audio_s=0.0, fallback_below=None)
SETTINGS = {
    "whisper-greedy": ("Whisper tiny.en, beam 1, no fallback (shipped before)", WHISPER),
    "whisper-fallback": (
        "Whisper tiny.en, beam 1, temperature fallback",
        dataclasses.replace(WHISPER, temperature_fallback=True),
    ),
    "whisper-guard": ("Whisper tiny.en, beam 1, loop guard", dataclasses.replace(WHISPER, loop_guard=True)),
    "whisper-beam5": (
        "Whisper tiny.en, beam 5, temperature fallback (faster-whisper's defaults)",
        dataclasses.replace(WHISPER, beam_size=5, temperature_fallback=True),
    ),
    "moonshine-unbounded": ("Moonshine tiny-en, unbounded (up to 50 tokens/s)", MOONSHINE),
    "moonshine-bound": ("Moonshine tiny-en, 6.5 tokens/s", dataclasses.replace(MOONSHINE, max_tokens_per_s=6.5)),
    "moonshine-pad1": (
        "Moonshine tiny-en, 6.5 tokens/s, padded to 1 s",
        dataclasses.replace(MOONSHINE, max_tokens_per_s=6.5, min_audio_s=1.0),
    ),
    "moonshine-pad1.5": (
        "Moonshine tiny-en, 6.5 tokens/s, padded to 1.5 s",
        dataclasses.replace(MOONSHINE, max_tokens_per_s=6.5, min_audio_s=1.5),
    ),
    "moonshine-pad2": (
        "Moonshine tiny-en, 6.5 tokens/s, padded to 2 s",
        dataclasses.replace(MOONSHINE, max_tokens_per_s=6.5, min_audio_s=2.0),
    ),
    "moonshine-shipped": (
        "Moonshine tiny-en, 6.5 tokens/s, padded to 1 s, Whisper (loop guard) when unsure (< -0.25): shipped",
        AsrOptions(engine="moonshine"),
    ),
    "whisper-shipped": (
        "Whisper tiny.en as asr.engine: whisper ships it (beam 1, loop guard)",
        AsrOptions(engine="whisper"),
    ),
}


@dataclasses.dataclass(frozen=True)
class Clip:
    set: str
    path: str
    audio: np.ndarray
    reference: str

    @property
    def single_word(self) -> bool:
        return len(normalize_words(self.reference)) == 1


def clips(limit: int = 0) -> list[Clip]:
    found: list[Clip] = []
    for name in SETS:
        with open(SPEECH / name / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        if limit:
            rows = rows[:: max(1, len(rows) // limit)][:limit]
        found += [Clip(name, r["path"], read_audio(SPEECH / name / r["path"], 16000), r["transcript"]) for r in rows]
    return [*found, Clip("librivox_cmusphinx", "jfk.flac", read_audio(SPEECH / "jfk.flac", 16000), JFK)]


def corpus_wer(rows: list[dict]) -> float:
    words = sum(len(normalize_words(r["reference"])) for r in rows)
    return round(sum(r["wer"] * len(normalize_words(r["reference"])) for r in rows) / max(1, words), 3)


def summarize(rows: list[dict]) -> dict:
    ms = [r["ms"] for r in rows]
    groups = {name: [r for r in rows if r["set"] == name] for name in SETS}
    groups["single words"] = [r for r in rows if r["single_word"]]
    groups["all"] = rows
    return {
        "wer": {name: corpus_wer(group) for name, group in groups.items()},
        "clips": {name: len(group) for name, group in groups.items()},
        "ms_p50": round(float(np.percentile(ms, 50)), 1),
        "ms_p90": round(float(np.percentile(ms, 90)), 1),
        "looped": sum(r["looped"] for r in rows),
        "second_opinions": sum(r["second_opinion"] for r in rows),
    }


def run_setting(options: AsrOptions, data: list[Clip], threads: int) -> list[dict]:
    transcriber = load_transcriber(dataclasses.replace(options, threads=threads))
    transcriber.warm()
    rows = []
    for clip in data:
        start = time.perf_counter()
        transcript = transcriber.transcribe(clip.audio)
        ms = (time.perf_counter() - start) * 1000
        rows.append(
            {
                "set": clip.set,
                "path": clip.path,
                "reference": clip.reference,
                "text": transcript.text,
                "wer": word_error_rate(clip.reference, transcript.text),
                "ms": round(ms, 1),
                "seconds": round(len(clip.audio) / 16000, 2),
                "single_word": clip.single_word,
                "looped": transcript.looped,
                "second_opinion": transcript.second_opinion,
                "confidence": transcript.confidence,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each engine (2: this machine's cores)")
    parser.add_argument("--limit", type=int, default=0, help="at most N clips of each set (0: all)")
    parser.add_argument("--json", type=Path, help="also write every clip's transcript and time here")
    args = parser.parse_args()
    data = clips(args.limit)
    print(f"{len(data)} clips, {sum(len(c.audio) for c in data) / 16000 / 60:.1f} min of speech", file=sys.stderr)
    results = {}
    for key in args.settings:
        label, options = SETTINGS[key]
        rows = run_setting(options, data, args.threads)
        results[key] = {"label": label, **summarize(rows), "rows": rows}
        print(f"{key}: {json.dumps({k: v for k, v in results[key].items() if k != 'rows'})}", file=sys.stderr)
    head = "| setting | all | speechocean762 | fsdd digits | librivox + jfk | single words | ms p50 / p90 | loops |"
    print(head + " second opinions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for result in results.values():
        w = result["wer"]
        print(
            f"| {result['label']} | {w['all']:.3f} | {w['speechocean762_train']:.3f} | {w['fsdd_dev']:.3f} | "
            f"{w['librivox_cmusphinx']:.3f} | {w['single words']:.3f} | "
            f"{result['ms_p50']:.0f} / {result['ms_p90']:.0f} | {result['looped']} | {result['second_opinions']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
