"""Decoding speed of the dialogue LM, with llama.cpp on the same GGUF beside it when llama-cpp-python is importable
(``pip install '.[bench]'``; it compiles llama.cpp, ~8 min on 2 cores).

Both decode the same prompt greedily for ``tokens`` tokens, ``runs`` times; the median rate after the first token is
reported (the prefill is timed apart as time to first token). Beside the configured LM, in the same run: when it
decodes through the lean step (:mod:`voiceos.dialogue.decode_step`), the same model through transformers' forward
(``model_forward``); when it decodes from the GGUF's blocks (:mod:`voiceos.dialogue.blocks`), the float32 weights
through the model's forward (``float32_weights``: neither speed-up); and on the CPU the weights in bfloat16, which
changes replies. Each comes with its speed over
the configured one and the share of greedy replies that stay identical.
"""

from __future__ import annotations

import copy
import dataclasses
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


def lm_throughput(config: Config, *, tokens: int = 64, runs: int = 3, agreement_tokens: int = 48) -> dict[str, Any]:
    from voiceos import models
    from voiceos.dialogue import DialogueLM

    plan = models.plan_for(config)
    lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads).with_options(temperature=0.0)
    variants = {"configured": lm}
    if lm.decode_step is not None:  # each token through transformers' forward instead: what the lean step gains
        variants["model_forward"] = lm.with_options(lean_decode=False)
    if lm.block_matrices:  # the float32 weights through the model's forward (neither speed-up): both gains together
        from voiceos.dialogue.blocks import without_blocks

        plain = dataclasses.replace(lm.options, lean_decode=False)
        variants["float32_weights"] = DialogueLM(
            without_blocks(lm.model), lm.tokenizer, plain, name=lm.name, source=lm.source
        )
    if lm.device == "cpu" and lm.model.dtype == torch.float32:
        variants["bfloat16"] = DialogueLM(
            copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer, lm.options, name=lm.name, source=lm.source
        )
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(runs):  # alternated, so that both see the same machine
        for name, variant in variants.items():
            samples[name].append(_decode_once(variant, tokens))
    rate, ttft = _medians(samples["configured"])
    result: dict[str, Any] = {
        "model": lm.name,
        "device": lm.device,
        "dtype": str(lm.model.dtype).removeprefix("torch."),
        "tokens_per_s": rate,
        "first_token_ms": ttft,
        "block_matrices": lm.block_matrices,
        "llama_cpp_tokens_per_s": None,
    }
    for name in variants.keys() - {"configured"}:  # each beside the configured one: speed ratio, same replies?
        other_rate, other_ttft = _medians(samples[name])
        result[name] = {
            "tokens_per_s": other_rate,
            "first_token_ms": other_ttft,
            "over_configured": round(other_rate / rate, 2) if rate else None,
            "same_greedy_replies": _same_replies(lm, variants[name], agreement_tokens),
        }
    result["conversation"] = conversation_first_token(lm)
    gguf = _gguf_file(config)
    if gguf is not None:
        llama = llama_cpp_throughput(gguf, lm.tokenizer, tokens=tokens, runs=runs, threads=config.runtime.threads)
        if llama is not None:
            result["llama_cpp_tokens_per_s"] = llama
            result["llama_cpp_over_ours"] = round(llama / result["tokens_per_s"], 2) if result["tokens_per_s"] else None
    return result


def _same_replies(lm: Any, other: Any, tokens: int) -> str:
    """How many of the agreement prompts' greedy replies ``other`` writes exactly as ``lm`` does."""
    same = sum(
        lm.reply([], text, max_new_tokens=tokens) == other.reply([], text, max_new_tokens=tokens)
        for text in AGREEMENT_PROMPTS
    )
    return f"{same}/{len(AGREEMENT_PROMPTS)}"


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

    llm = Llama(model_path=str(gguf), n_ctx=1024, n_threads=threads or os.cpu_count() or 1, verbose=False)
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
