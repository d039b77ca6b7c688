"""The compute left after the end of the user's speech, with an oracle end of turn (issue #6's floor).

`voiceos bench` measures the live daemon: its end-to-end figure includes the silence the VAD waits for. This
script asks what would remain if the end of the turn were known the instant the user stopped (no hangover, no
pause detection, no speculation lost): per recording, the chain that must run after the last word, each stage
warm, one after the other in one loaded pipeline, as the daemon runs them:

    Whisper over the utterance -> LM prefill + emotion head -> first clause -> its speech (Piper)

Nothing of it can start earlier: Whisper needs the last word, the LM needs the transcript. The speaker's buffer
comes on top (`output_buffering` in `voiceos bench`: ~90 ms at the smallest buffer tried, 25 ms).

    python benchmarks/critical_path.py [--utterances 12] [--passes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from voiceos.bench import DEFAULT_SPEECH, bench_clips
from voiceos.config import load_config
from voiceos.pipeline import Pipeline
from voiceos.vad import segment

STAGES = ("asr", "lm_first_token", "first_sentence", "tts_first_audio", "floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=12, help="recordings, as the bench picks them")
    parser.add_argument("--passes", type=int, default=2, help="passes over them (default 2)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    config = load_config(None)
    pipeline = Pipeline.load(config)
    assert pipeline.transcriber is not None
    clips = bench_clips(DEFAULT_SPEECH, args.utterances)
    per_stage: dict[str, list[float]] = {key: [] for key in STAGES}
    for _ in range(args.passes):
        for _name, samples in clips:
            utterances = segment(samples, config.vad)
            if not utterances:
                continue
            last = utterances[-1]  # the turn's last utterance: what is transcribed after its end
            start = time.perf_counter()
            text = pipeline.transcriber.transcribe(last.samples).text
            asr_ms = (time.perf_counter() - start) * 1000
            if not text:  # nothing to answer: the daemon would not reply either
                continue
            turn = pipeline.reply(text, remember=False)
            stages = {"asr": asr_ms, **{k: turn.timings_ms[k] for k in STAGES[1:4]}}
            stages["floor"] = asr_ms + turn.timings_ms["tts_first_audio"]
            for key, value in stages.items():
                per_stage[key].append(value)
    result = {
        "turns": len(per_stage["floor"]),
        "median_ms": {k: round(statistics.median(v), 1) for k, v in per_stage.items()},
        "p90_ms": {k: round(statistics.quantiles(v, n=10)[-1], 1) for k, v in per_stage.items()},
        "min_ms": {k: round(min(v), 1) for k, v in per_stage.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['turns']} turns; ms after the end of speech, oracle end of turn, no speaker buffer")
    print(f"{'stage':<18}{'median':>10}{'p90':>10}{'min':>10}")
    for key in STAGES:
        print(f"{key:<18}{result['median_ms'][key]:>10.0f}{result['p90_ms'][key]:>10.0f}{result['min_ms'][key]:>10.0f}")


if __name__ == "__main__":
    main()
