"""GPU check: does voiceos run where torch sees a CUDA GPU? Run it on a machine with one.

    python benchmarks/gpu_check.py [--gguf FILE.gguf] [--ct2-whisper DIR] [--tokens 32]

Prints one JSON object:
- ``plan``: what ``runtime.device: auto`` chose, with ``whisper_note`` saying why Whisper stays on the CPU, if it does;
- ``whisper_cuda``: the probe's verdict (:func:`voiceos.models.whisper_cuda_problem`) beside a real CTranslate2 encode
  on the GPU with the Whisper model in ``--ct2-whisper`` (any CTranslate2 Whisper directory), and whether they agree;
- ``lm``: the dialogue LM with the shipped emotion head, greedy, on the GPU in bfloat16 (float16 where the GPU lacks
  it) and in float32 and on the CPU in float32, over the same prompts (variants alternated over ``--rounds``):
  replies, emotion labels, tokens/s and time to first token (the last round's medians), and how many replies and
  labels match the CPU's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

PROMPTS = (
    "My dog died yesterday and I miss him so much.",
    "I just got the job I wanted for years!",
    "Why does my landlord keep ignoring my messages? This is ridiculous.",
    "There is a strange noise downstairs and I am home alone.",
    "What is the capital of France?",
    "Wait, the concert is tonight? I had no idea!",
)


def whisper_cuda(model_dir: str | None) -> dict[str, Any]:
    from voiceos.models import whisper_cuda_problem

    problem = whisper_cuda_problem()
    result: dict[str, Any] = {"probe": problem or "usable"}
    if model_dir is None:
        return result
    import ctranslate2
    import numpy as np

    try:
        model = ctranslate2.models.Whisper(model_dir, device="cuda", compute_type="float16")
        features = ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), dtype=np.float32))
        model.encode(features)
        result["encode_on_gpu"] = "ok"
    except RuntimeError as err:
        result["encode_on_gpu"] = str(err).splitlines()[0]
    result["probe_agrees"] = (problem is None) == (result["encode_on_gpu"] == "ok")
    return result


def load_lm(options: Any, device: str, dtype: str) -> Any:
    from voiceos.dialogue.lm import DialogueLM
    from voiceos.emotion.classifier import load_head
    from voiceos.models import plan_devices

    lm = DialogueLM.load(options, plan_devices(device, lm_dtype=dtype)).with_options(temperature=0.0)
    lm.attach_emotion_head(*load_head(None))
    list(lm.stream_reply([], "Hello there.", max_new_tokens=4, on_emotion=lambda e: None))  # warm-up (CUDA init)
    return lm


def run_prompts(lm: Any, tokens: int) -> list[dict[str, Any]]:
    import torch

    rows = []
    for prompt in PROMPTS:
        seen: list[Any] = []
        reply = "".join(lm.stream_reply([], prompt, max_new_tokens=tokens, on_emotion=seen.append))
        if lm.device.startswith("cuda"):
            torch.cuda.synchronize()
        stats = lm.last_stats
        rows.append(
            {
                "reply": reply,
                "emotion": seen[0].label if seen else None,
                "tokens_per_s": round(stats.tokens_per_s, 1),
                "first_token_ms": round(stats.ttft_s * 1000, 1),
            }
        )
    return rows


def profile_decode(lm: Any, steps: int = 16) -> str:
    """The top operators of ``steps`` decode steps (after the prefill), by CPU time: where a token's time goes."""
    from torch.profiler import ProfilerActivity, profile

    reply = lm.stream_reply([], PROMPTS[0], max_new_tokens=steps + 1)
    next(reply)  # the prefill and the first token
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in reply:
            pass
    return prof.key_averages().table(sort_by="cpu_time_total", row_limit=12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", help="a GGUF file to load instead of the embedded SmolLM2")
    parser.add_argument("--ct2-whisper", help="a CTranslate2 Whisper directory to try on the GPU")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompts, variants alternated")
    parser.add_argument("--profile", action="store_true", help="print where decode steps spend their time (stderr)")
    args = parser.parse_args(argv)

    import torch

    from voiceos.config import DialogueOptions
    from voiceos.models import plan_devices

    if not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA GPU on this machine", file=sys.stderr)
        return 2
    options = DialogueOptions()
    if args.gguf:
        gguf = Path(args.gguf)
        options = DialogueOptions(model=str(gguf.parent), gguf_file=gguf.name)
    plan = plan_devices("auto", lm_model=options.model)
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "plan": asdict(plan),
        "whisper_cuda": whisper_cuda(args.ct2_whisper),
    }
    reduced = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    variants = {}
    for device, dtype in [("cuda", reduced), ("cuda", "float32"), ("cpu", "float32")]:
        start = time.perf_counter()
        variants[f"{device}/{dtype}"] = (load_lm(options, device, dtype), time.perf_counter() - start)
    rounds: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in variants}
    for _ in range(args.rounds):  # alternated, so that every variant sees the same machine
        for name, (model, _) in variants.items():
            rounds[name].append(run_prompts(model, args.tokens))
    lm = {}
    for name, (model, load_s) in variants.items():
        rows = rounds[name][-1]  # the last round: every shape seen before, so no first-use costs
        lm[name] = {
            "device": model.device,
            "dtype": str(model.model.dtype).removeprefix("torch."),
            "load_s": round(load_s, 1),
            "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in rows),
            "first_token_ms_median": statistics.median(r["first_token_ms"] for r in rows),
            "first_round_first_token_ms_median": statistics.median(r["first_token_ms"] for r in rounds[name][0]),
            "rows": rows,
        }
        if args.profile:
            print(f"== {name}\n{profile_decode(model)}", file=sys.stderr)
    cpu = lm["cpu/float32"]["rows"]
    for result in lm.values():
        pairs = list(zip(result["rows"], cpu, strict=True))
        result["same_replies_as_cpu"] = f"{sum(a['reply'] == b['reply'] for a, b in pairs)}/{len(cpu)}"
        result["same_emotions_as_cpu"] = f"{sum(a['emotion'] == b['emotion'] for a, b in pairs)}/{len(cpu)}"
    out["lm"] = lm
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
