"""The dialogue LM's speed in one process before and after Whisper (CTranslate2) has run in it, as in the daemon.

`voiceos bench`'s `lm` figure comes from a process where only the LM runs. The daemon also runs Whisper, and until
2026-11-27 that halved the LM's decoding speed: the block kernel used OpenMP, whose idle workers stop spinning once
the process has more OpenMP threads than CPUs. This measures the first token (emotion head on, persona cached) and
the decoding rate: before Whisper loads, right after one transcription, and a few seconds later. Result in
benchmarks/README.md ("The lean decode step, short prefills from the blocks, the kernel's own threads").

    .venv/bin/python benchmarks/lm_beside_whisper.py [--config config.yaml] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import voiceos  # first: it sets OpenMP's wait policy before torch loads, as every entry point does

PROMPT = "Can you help me plan a short walk this evening?"


def main() -> None:
    import numpy as np

    from voiceos import models
    from voiceos.asr import load_transcriber
    from voiceos.config import load_config
    from voiceos.dialogue.lm import DialogueLM
    from voiceos.emotion.classifier import load_head

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--idle-s", type=float, default=3.0)
    args = parser.parse_args()
    config = load_config(args.config)
    plan = models.plan_for(config)
    lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads)
    lm.attach_emotion_head(*load_head(config.emotion.checkpoint))
    talk = lm.with_options(temperature=0.0)

    def first_token_ms() -> float:
        talk.prompt_cache.clear()
        reply = talk.stream_reply([], PROMPT, on_emotion=lambda _: None)
        start = time.perf_counter()
        next(reply)
        elapsed = time.perf_counter() - start
        reply.close()
        return elapsed * 1000

    def tokens_per_s() -> float:
        talk.prompt_cache.clear()
        "".join(talk.stream_reply([], PROMPT, max_new_tokens=40))
        return talk.last_stats.tokens_per_s

    def measure() -> dict[str, float]:
        return {
            "first_token_ms": round(statistics.median(first_token_ms() for _ in range(args.rounds)), 1),
            "tokens_per_s": round(statistics.median(tokens_per_s() for _ in range(3)), 1),
        }

    first_token_ms()  # the persona's cache, once
    result = {"openmp_waits_passively": voiceos.OPENMP_WAITS_PASSIVELY, "before_whisper": measure()}
    asr = load_transcriber(config.asr, plan)  # the configured engine (its name says Whisper: it was the only one)
    asr.warm()
    asr.transcribe(np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.01)
    result["after_whisper"] = measure()
    time.sleep(args.idle_s)
    result[f"after_whisper_and_{args.idle_s:g}_s_idle"] = measure()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
