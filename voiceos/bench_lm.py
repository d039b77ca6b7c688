"""Decoding speed of the dialogue LM, with llama.cpp on the same GGUF beside it when llama-cpp-python is importable
(``pip install '.[bench]'``; it compiles llama.cpp, ~8 min on 2 cores).

Both decode the same prompt greedily for ``tokens`` tokens, ``runs`` times; the median rate after the first token is
reported (the prefill is timed apart as time to first token). Beside the configured LM, in the same run: when it
decodes through the lean step (:mod:`voiceos.dialogue.decode_step`), the same model through transformers' forward
(``model_forward``); when it decodes from the GGUF's blocks (:mod:`voiceos.dialogue.blocks`), the float32 weights
through the model's forward (``float32_weights``: neither speed-up); and on the CPU the weights in bfloat16, which
changes replies. Each comes with its speed over the configured one and the share of greedy replies that stay
identical. The float32, bfloat16 and llama.cpp figures come from a child process with OpenMP's default wait policy
(:func:`_baselines_in_child`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from voiceos.config import Config

log = logging.getLogger(__name__)
PROMPT = "Tell me a short story about a lighthouse keeper and a storm."
AGREEMENT_PROMPTS = (
    "What is the capital of France?",
    "Tell me a fun fact about octopuses.",
    "My dog died yesterday and I miss him so much.",
    "Can you help me plan a short walk this evening?",
    "How do I boil an egg?",
    "Why is the sky blue?",
)


def lm_throughput(
    config: Config,
    *,
    config_path: str | None = None,
    tokens: int = 64,
    runs: int = 3,
    agreement_tokens: int = 48,
) -> dict[str, Any]:
    """The configured LM's decoding rate, with the baselines beside it (module doc). ``config_path`` is ``config``'s
    file, for the child process that measures the baselines."""
    from voiceos import models
    from voiceos.dialogue import DialogueLM

    plan = models.plan_for(config)
    lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads).with_options(temperature=0.0)
    variants = {"configured": lm}
    if lm.decode_step is not None:  # each token through transformers' forward instead: what the lean step gains
        variants["model_forward"] = lm.with_options(lean_decode=False)
    measured = _measure(variants, tokens, runs, agreement_tokens)
    rate, ttft, replies = measured.pop("configured")
    result: dict[str, Any] = {
        "model": lm.name,
        "device": lm.device,
        "dtype": str(lm.model.dtype).removeprefix("torch."),
        "tokens_per_s": rate,
        "first_token_ms": ttft,
        "block_matrices": lm.block_matrices,
        "lean_decode_step": lm.decode_step is not None,
        "llama_cpp_tokens_per_s": None,
    }
    measured.update(_baselines_in_child(config_path, tokens, runs, agreement_tokens))
    llama = measured.pop("llama_cpp", None)
    for name, (other_rate, other_ttft, other_replies) in measured.items():
        same = sum(a == b for a, b in zip(replies, other_replies, strict=True))
        result[name] = {
            "tokens_per_s": other_rate,
            "first_token_ms": other_ttft,
            "over_configured": round(other_rate / rate, 2) if rate else None,
            "same_greedy_replies": f"{same}/{len(replies)}",
        }
    result["conversation"] = conversation_first_token(lm)
    if llama is not None:
        result["llama_cpp_tokens_per_s"] = llama[0]
        result["llama_cpp_over_ours"] = round(llama[0] / rate, 2) if rate else None
    return result


def _baselines_in_child(
    config_path: str | None, tokens: int, runs: int, agreement_tokens: int
) -> dict[str, tuple[float, float, list[str]]]:
    """The torch-only baselines (float32 weights through the model's forward, as before the block kernel; bfloat16)
    and llama.cpp, measured in a child process with OpenMP's default wait policy: this process tells OpenMP to wait
    passively for the block kernel's sake (``voiceos/__init__.py``), which slows torch's own decoding and
    llama.cpp's OpenMP threads, and would make them look slower than they are."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_WAIT_POLICY="")  # set, so `import voiceos` keeps it; empty is OpenMP's default
    command = [sys.executable, "-m", "voiceos.bench_lm", "--tokens", str(tokens), "--runs", str(runs)]
    command += ["--agreement-tokens", str(agreement_tokens)] + (["--config", config_path] if config_path else [])
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        log.warning("the LM baselines failed: %s", (done.stderr.strip().splitlines() or ["no output"])[-1])
        return {}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (v["tokens_per_s"], v["first_token_ms"], v["replies"]) for name, v in found.items()}


def baselines(config: Config, *, tokens: int, runs: int, agreement_tokens: int) -> dict[str, dict[str, Any]]:
    """What :func:`_baselines_in_child` runs: the float32 weights through the model's forward, bfloat16 (CPU only)
    and llama.cpp on the GGUF when llama-cpp-python is importable."""
    from voiceos import models
    from voiceos.dialogue import DialogueLM

    plain = dataclasses.replace(config.dialogue, block_kernel=False, lean_decode=False)
    lm = DialogueLM.load(plain, models.plan_for(config), threads=config.runtime.threads)
    lm = lm.with_options(temperature=0.0)
    variants = {"float32_weights": lm}
    if lm.device == "cpu" and lm.model.dtype == torch.float32:
        variants["bfloat16"] = DialogueLM(
            copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer, lm.options, name=lm.name, source=lm.source
        )
    found: dict[str, dict[str, Any]] = {
        name: {"tokens_per_s": rate, "first_token_ms": ttft, "replies": replies}
        for name, (rate, ttft, replies) in _measure(variants, tokens, runs, agreement_tokens).items()
    }
    gguf = _gguf_file(config)
    if gguf is not None:
        llama = llama_cpp_throughput(gguf, lm.tokenizer, tokens=tokens, runs=runs, threads=config.runtime.threads)
        if llama is not None:
            found["llama_cpp"] = {"tokens_per_s": llama, "first_token_ms": None, "replies": []}
    return found


def _measure(
    variants: dict[str, Any], tokens: int, runs: int, agreement_tokens: int
) -> dict[str, tuple[float, float, list[str]]]:
    """Per variant: median tokens/s and first-token ms over ``runs`` decodes (the variants alternated, so that all
    see the same machine), and its greedy replies to the agreement prompts."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, variant in variants.items():
            samples[name].append(_decode_once(variant, tokens))
    return {
        name: (*_medians(samples[name]), _greedy_replies(variant, agreement_tokens))
        for name, variant in variants.items()
    }


def _greedy_replies(lm: Any, tokens: int) -> list[str]:
    return [lm.reply([], text, max_new_tokens=tokens) for text in AGREEMENT_PROMPTS]


def conversation_first_token(lm: Any, turns: tuple[str, ...] = AGREEMENT_PROMPTS, tokens: int = 32) -> dict[str, Any]:
    """Time to first token over one conversation, each turn answered twice side by side: starting from the cache
    the last reply left (what the pipeline does) and from the persona's cache only (the whole history prefilled
    again). Turns after the first are reported (the first has no history); the replies must be the same."""
    reuse, fresh = lm.with_options(), lm.with_options()
    history: list[dict[str, str]] = []
    ttft: dict[str, list[float]] = {"reuse": [], "fresh": []}
    same, prompt_tokens, reused = 0, [], []
    for turn, text in enumerate(turns):
        fresh.prompt_cache.clear()
        plain = fresh.reply(history, text, max_new_tokens=tokens)
        fresh_ttft = fresh.last_stats.ttft_s
        answer = reuse.reply(history, text, max_new_tokens=tokens)
        if turn:
            ttft["fresh"].append(fresh_ttft * 1000)
            ttft["reuse"].append(reuse.last_stats.ttft_s * 1000)
            prompt_tokens.append(reuse.last_stats.prompt_tokens)
            reused.append(reuse.last_stats.reused_tokens)
            same += answer == plain
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    reuse_ms, fresh_ms = statistics.median(ttft["reuse"]), statistics.median(ttft["fresh"])
    return {
        "turns": len(turns) - 1,
        "prompt_tokens_median": statistics.median(prompt_tokens),
        "reused_tokens_median": statistics.median(reused),
        "first_token_ms_reuse_p50": round(reuse_ms, 1),
        "first_token_ms_history_prefilled_p50": round(fresh_ms, 1),
        "history_prefilled_over_reuse": round(fresh_ms / reuse_ms, 2) if reuse_ms else None,
        "same_replies": f"{same}/{len(turns) - 1}",
    }


def _decode_once(lm: Any, tokens: int) -> tuple[float, float]:
    """Tokens/s after the first token, and time to first token (ms), of one greedy decode of :data:`PROMPT`."""
    "".join(lm.stream_reply([], PROMPT, max_new_tokens=tokens))
    return lm.last_stats.tokens_per_s, lm.last_stats.ttft_s * 1000


def _medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return round(statistics.median(s[0] for s in samples), 1), round(statistics.median(s[1] for s in samples), 1)


def _gguf_file(config: Config) -> Path | None:
    from voiceos import models

    if config.dialogue.model == models.EMBEDDED_LM:
        return models.embedded_lm_gguf()
    if config.dialogue.gguf_file and Path(config.dialogue.model).is_dir():
        return Path(config.dialogue.model) / config.dialogue.gguf_file
    return None


def llama_cpp_throughput(gguf: Path, tokenizer: Any, *, tokens: int, runs: int, threads: int = 0) -> float | None:
    """Median decode tokens/s of llama.cpp on ``gguf`` (None when llama-cpp-python is not installed)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        log.info("llama-cpp-python is not installed: no llama.cpp figure")
        return None
    import os

    # n_batch 1: llama.cpp (0.3.36) segfaults on multi-token batches of the Q4_1 GGUF in its AMX path on CPUs with
    # AMX; the rate after the first token is per token anyway
    llm = Llama(model_path=str(gguf), n_ctx=1024, n_batch=1, n_threads=threads or os.cpu_count() or 1, verbose=False)
    messages = [{"role": "user", "content": PROMPT}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    rates = []
    for _ in range(runs):
        first, count = None, 0
        for _chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, stream=True):
            count += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        if first is not None and count > 1 and end > first:
            rates.append((count - 1) / (end - first))
    return round(statistics.median(rates), 1) if rates else None


def _main() -> None:
    import argparse

    from voiceos.config import load_config

    parser = argparse.ArgumentParser(description="the LM baselines of `voiceos bench` (one JSON line)")
    parser.add_argument("--config")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--agreement-tokens", type=int, default=48)
    args = parser.parse_args()
    found = baselines(
        load_config(args.config), tokens=args.tokens, runs=args.runs, agreement_tokens=args.agreement_tokens
    )
    print(json.dumps(found))


if __name__ == "__main__":
    _main()
