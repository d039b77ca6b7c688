"""False and missed wakes of the name gate (wake.mode: name), on the shared real speech, for each placement rule.

1. Every recording in ../shared/data/speech is transcribed once with the configured ASR (cached in --cache).
2. False wakes: for each name, the recordings whose reference transcript does not say it are talk that is not for
   the assistant; a wake there is false. Reported per hour of that speech, per placement rule and matching.
3. Missed wakes: a real recording of the name (cut out of a recording that says it, at Whisper's word timestamps) put
   before a real sentence of another speaker, 150 ms apart, as people address an assistant ("Mary, what about the
   bus"); and the same name after it ("what about the bus, Mary"). A miss is no wake at the rule's place. The
   recordings that say the name mid-sentence ("so Mary went on to study") are reported apart: no rule but anywhere
   should wake on them. The name is brought to the sentence's level (one person says both), and a cut that, heard
   alone, is no longer the name is passed over for the next recording that says it.

    .venv/bin/python benchmarks/wake_names.py [--config FILE] [--names mary billy ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"
RATE = 16000
DEFAULT_NAMES = ("mary", "billy", "tina", "peter", "david", "lucy", "mike", "jack")
RULES = ("start", "start_or_end", "anywhere")


def recordings() -> list[tuple[str, Path, str]]:
    found = []
    for manifest in sorted(SPEECH.glob("*/manifest.csv")):
        with manifest.open(newline="") as file:
            for row in csv.DictReader(file):
                found.append(
                    (f"{manifest.parent.name}/{row['path']}", manifest.parent / row["path"], row["transcript"])
                )
    if (SPEECH / "jfk.flac").is_file():
        found.append(("jfk.flac", SPEECH / "jfk.flac", "and so my fellow americans ask not what your country can do"))
    return found


def transcribe_all(transcriber, cache: Path) -> dict[str, dict]:
    from voiceos.audio.files import read_audio

    done = json.loads(cache.read_text()) if cache.is_file() else {}
    for key, path, reference in recordings():
        if key in done:
            continue
        samples = read_audio(path, RATE)
        result = transcriber.transcribe(samples)
        done[key] = {"reference": reference.lower(), "text": result.text, "seconds": len(samples) / RATE}
        cache.write_text(json.dumps(done))
    return done


def name_clip(transcriber, name: str, items: dict[str, dict]) -> np.ndarray | None:
    """The name as a real speaker said it: cut at the ASR's word timestamps out of a recording that says it, the
    first whose cut, heard alone, is still the name (a cut through a child's word is no test of the gate)."""
    from voiceos.audio.files import read_audio
    from voiceos.wake.names import word_is_name

    paths = {key: path for key, path, _ in recordings()}
    for key, item in sorted(items.items()):
        if name not in item["reference"].split():
            continue
        samples = read_audio(paths[key], RATE)
        for word in transcriber.transcribe(samples, word_timestamps=True).words:
            if word_is_name(word.word.strip(" ,.?!"), name):
                start, end = int(max(0, word.start_s - 0.05) * RATE), int((word.end_s + 0.05) * RATE)
                alone = transcriber.transcribe(samples[start:end]).text.strip(" .,!?")
                if word_is_name(alone, name):
                    return samples[start:end]
    return None


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES))
    parser.add_argument("--cache", default="/tmp/voiceos-wake-transcripts.json")
    parser.add_argument("--sentences", type=int, default=40, help="real sentences each name is put before/after")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()

    from voiceos.asr import Transcriber
    from voiceos.audio.files import read_audio
    from voiceos.config import load_config
    from voiceos.models import plan_for
    from voiceos.wake.names import NameSpotter

    config = load_config(args.config)
    transcriber = Transcriber.load(config.asr, plan_for(config))
    start = time.perf_counter()
    items = transcribe_all(transcriber, Path(args.cache))
    paths = {key: path for key, path, _ in recordings()}
    sentences = [k for k, v in sorted(items.items()) if len(v["reference"].split()) >= 4 and "fsdd" not in k]
    rng = random.Random(0)
    result: dict = {"names": {}, "asr": config.asr.model, "recordings": len(items)}
    cpu_start = time.process_time()
    gate_calls = 0
    for name in args.names:
        negatives = {k: v for k, v in items.items() if name not in v["reference"].split()}
        mid_sentence = {k: v for k, v in items.items() if name in v["reference"].split()}
        hours = sum(v["seconds"] for v in negatives.values()) / 3600
        clip = name_clip(transcriber, name, items)
        per_rule: dict = {}
        addressed = []
        if clip is not None:
            gap = np.zeros(int(0.15 * RATE), np.float32)
            for key in rng.sample(sentences, min(args.sentences, len(sentences))):
                if name in items[key]["reference"].split():
                    continue
                sentence = read_audio(paths[key], RATE)
                said = clip * (_rms(sentence) / max(_rms(clip), 1e-6))  # one person says both: one level
                before = transcriber.transcribe(np.concatenate([said, gap, sentence])).text
                after = transcriber.transcribe(np.concatenate([sentence, gap, said])).text
                addressed.append((before, after))
        for rule in RULES:
            spotter = NameSpotter([name], rule)
            false = [v["text"] for v in negatives.values() if spotter.spot(v["text"])]
            gate_calls += len(negatives)
            per_rule[rule] = {
                "false_wakes": len(false),
                "false_wakes_per_hour": round(len(false) / hours, 2) if hours else None,
                "false_examples": false[:3],
                "missed_name_first": sum(spotter.spot(b) is None for b, _ in addressed),
                "missed_name_last": sum(spotter.spot(a) is None for _, a in addressed),
                "woke_mid_sentence": sum(spotter.spot(v["text"]) is not None for v in mid_sentence.values()),
            }
        result["names"][name] = {
            "negative_hours": round(hours, 3),
            "addressed": len(addressed),
            "mid_sentence": len(mid_sentence),
            "rules": per_rule,
            "addressed_examples": addressed[:2],
        }
    gate_cpu = time.process_time() - cpu_start
    result["seconds"] = round(time.perf_counter() - start, 1)
    for rule in RULES:
        rows = [n["rules"][rule] for n in result["names"].values()]
        hours = sum(n["negative_hours"] for n in result["names"].values())
        addressed = sum(n["addressed"] for n in result["names"].values())
        result[rule] = {
            "false_wakes_per_hour": round(sum(r["false_wakes"] for r in rows) / hours, 2) if hours else None,
            "missed_name_first": round(sum(r["missed_name_first"] for r in rows) / max(1, addressed), 3),
            "missed_name_last": round(sum(r["missed_name_last"] for r in rows) / max(1, addressed), 3),
        }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    for rule in RULES:
        r = result[rule]
        print(
            f"{rule}: false wakes {r['false_wakes_per_hour']}/hour of talk; missed: name first "
            f"{r['missed_name_first']:.1%}, name last {r['missed_name_last']:.1%}"
        )
    print(f"the spotter's own cost: {gate_cpu / max(1, gate_calls) * 1e6:.0f} us of CPU a transcript (with the rest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
