"""Per-stage timings of `voiceos say`, as medians over a few prompts.

Two views side by side in one run:
- cold: `voiceos say --local --json` as a user runs it, one process per prompt (imports and model loads included);
- warm: the same prompts through one loaded pipeline (what a running daemon pays per turn).

    python benchmarks/say_stages.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = (
    "What is the capital of France?",
    "Good morning! How are you today?",
    "Can you suggest something to cook for dinner?",
)
STAGES = ("lm_first_token", "tts_first_audio", "lm_total", "total")


def cold_runs(runs: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {key: [] for key in (*STAGES, "process_wall")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for j, prompt in enumerate(PROMPTS):
                out = Path(tmp) / f"{i}-{j}.wav"
                start = time.perf_counter()
                cmd = [sys.executable, "-m", "voiceos", "say", "--local", "--json", "--no-play", "--out", str(out)]
                proc = subprocess.run([*cmd, prompt], capture_output=True, text=True, check=True)
                timings["process_wall"].append((time.perf_counter() - start) * 1000)
                data = json.loads(proc.stdout)
                for key in STAGES:
                    timings[key].append(data["timings_ms"][key])
    return timings


def warm_runs(runs: int) -> tuple[dict[str, list[float]], float]:
    from voiceos.config import load_config
    from voiceos.pipeline import Pipeline

    start = time.perf_counter()
    pipeline = Pipeline.load(load_config(None))
    load_ms = (time.perf_counter() - start) * 1000
    timings: dict[str, list[float]] = {key: [] for key in (*STAGES, "audio_s")}
    for _ in range(runs):
        for prompt in PROMPTS:
            turn = pipeline.reply(prompt, remember=False)
            for key in STAGES:
                timings[key].append(turn.timings_ms[key])
            timings["audio_s"].append(turn.audio_seconds * 1000)
    return timings, load_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="passes over the prompts (default 3)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()
    cold = cold_runs(args.runs)
    warm, load_ms = warm_runs(args.runs)
    result = {
        "runs": args.runs * len(PROMPTS),
        "cold_median_ms": {k: round(statistics.median(v), 1) for k, v in cold.items()},
        "warm_median_ms": {k: round(statistics.median(v), 1) for k, v in warm.items() if k != "audio_s"},
        "warm_reply_audio_median_s": round(statistics.median(warm["audio_s"]) / 1000, 2),
        "pipeline_load_ms": round(load_ms, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['runs']} turns per column; medians in ms (pipeline load {load_ms:.0f} ms)")
    print(f"{'stage':<18}{'cold say':>12}{'warm turn':>12}")
    for key in (*STAGES, "process_wall"):
        warm_value = result["warm_median_ms"].get(key, float("nan"))
        print(f"{key:<18}{result['cold_median_ms'][key]:>12.0f}{warm_value:>12.0f}")


if __name__ == "__main__":
    main()
