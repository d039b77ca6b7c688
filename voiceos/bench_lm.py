"""Decoding speed of the dialogue LM, with llama.cpp on the same GGUF beside it when llama-cpp-python is importable.

Both decode the same prompt greedily for ``tokens`` tokens, ``runs`` times; the median rate after the first token is
reported (the prefill is timed apart as time to first token).
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

from voiceos.config import Config

log = logging.getLogger(__name__)
PROMPT = "Tell me a short story about a lighthouse keeper and a storm."


def lm_throughput(config: Config, *, tokens: int = 64, runs: int = 3) -> dict[str, Any]:
    from voiceos import models
    from voiceos.dialogue import DialogueLM

    plan = models.plan_devices(config.runtime.device, config.asr.compute_type, config.dialogue.dtype)
    lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads).with_options(temperature=0.0)
    rates, ttfts = [], []
    for _ in range(runs):
        "".join(lm.stream_reply([], PROMPT, max_new_tokens=tokens))
        rates.append(lm.last_stats.tokens_per_s)
        ttfts.append(lm.last_stats.ttft_s * 1000)
    result: dict[str, Any] = {
        "model": lm.name,
        "device": lm.device,
        "tokens_per_s": round(statistics.median(rates), 1),
        "first_token_ms": round(statistics.median(ttfts), 1),
        "llama_cpp_tokens_per_s": None,
    }
    gguf = _gguf_file(config)
    if gguf is not None:
        llama = llama_cpp_throughput(gguf, lm.tokenizer, tokens=tokens, runs=runs, threads=config.runtime.threads)
        if llama is not None:
            result["llama_cpp_tokens_per_s"] = llama
            result["llama_cpp_over_ours"] = round(llama / result["tokens_per_s"], 2) if result["tokens_per_s"] else None
    return result


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
