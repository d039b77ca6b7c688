"""Decoding speed of the dialogue LM: each decoder of the embedded model on the same GGUF, in one run.

The decoders (:mod:`voiceos.dialogue.backend`): llama.cpp in process (:mod:`voiceos.dialogue.llama_cpp_lm`) and
torch (transformers' forward, through the GGUF block kernel and the lean decode step where they run), each with the
shipped adapter and without it (llama.cpp's plain rate is the reference the default decoder is held to). All decode
the same prompt greedily for ``tokens`` tokens, ``runs`` times, alternated so that all see the same machine; the
median rate after the first token is reported, and the time to first token (the prefill) apart. Beside the
configured one, in the same run: the other decoder; when torch decodes through the lean step, the same model through
transformers' forward (``model_forward``); from the child process described in :func:`_baselines_in_child`, the
float32 weights through the model's forward (``float32_weights``) and on the CPU bfloat16 weights, which change
replies. Each comes with its speed over the configured one and the share of greedy replies that stay identical.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import statistics
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


class WithoutAdapter:
    """An LM whose replies are always the base model's (``use_adapter=False``): a decoder's plain rate."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm

    @property
    def last_stats(self) -> Any:
        return self.lm.last_stats

    def stream_reply(self, *args: Any, **kwargs: Any) -> Any:
        return self.lm.stream_reply(*args, **{**kwargs, "use_adapter": False})

    def reply(self, *args: Any, **kwargs: Any) -> str:
        return "".join(self.stream_reply(*args, **kwargs))


def decoders(config: Config, plan: Any) -> tuple[str, dict[str, Any]]:
    """The configured decoder's name and every decoder of the configured model here, greedy: ``torch`` (with the
    block kernel and lean step as configured) and, where llama.cpp can decode it, ``llama_cpp`` sharing the torch
    model; each also ``_no_adapter`` when an adapter is applied."""
    from voiceos.dialogue.backend import choose_decoder
    from voiceos.dialogue.lm import DialogueLM

    configured, _ = choose_decoder(config.dialogue, plan)
    torch_lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads).with_options(temperature=0.0)
    found: dict[str, Any] = {"torch": torch_lm}
    if choose_decoder(dataclasses.replace(config.dialogue, decoder="auto"), plan)[0] == "llama_cpp":
        from voiceos.dialogue.llama_cpp_lm import LlamaCppLM

        llama = LlamaCppLM.beside(torch_lm, config.dialogue, threads=config.runtime.threads)
        found["llama_cpp"] = llama.with_options(temperature=0.0)
    if torch_lm.adapter is not None:
        found.update({f"{name}_no_adapter": WithoutAdapter(lm) for name, lm in list(found.items())})
    return configured, found


def lm_throughput(
    config: Config,
    *,
    config_path: str | None = None,
    tokens: int = 64,
    runs: int = 3,
    agreement_tokens: int = 48,
) -> dict[str, Any]:
    """The configured decoder's rate, with the others beside it (module doc). ``config_path`` is ``config``'s file,
    for the child process that measures the float32 and bfloat16 baselines."""
    from voiceos import models

    plan = models.plan_for(config)
    configured, found = decoders(config, plan)
    lm = found.pop(configured)
    variants = {"configured": lm, **found}
    torch_lm = lm if configured == "torch" else found["torch"]
    if configured == "torch" and torch_lm.decode_step is not None:  # each token through transformers' forward
        variants["model_forward"] = torch_lm.with_options(lean_decode=False)
    measured = _measure(variants, tokens, runs, agreement_tokens)
    rate, ttft, replies = measured.pop("configured")
    result: dict[str, Any] = {
        "model": torch_lm.name,
        "device": torch_lm.device,
        "dtype": str(torch_lm.model.dtype).removeprefix("torch."),
        "decoder": configured,
        "tokens_per_s": rate,
        "first_token_ms": ttft,
        "block_matrices": torch_lm.block_matrices,
        "lean_decode_step": torch_lm.decode_step is not None,
        "adapter": torch_lm.adapter is not None,
        "llama_cpp_tokens_per_s": None,  # llama.cpp's plain rate (no adapter), where it runs
    }
    measured.update(_baselines_in_child(config_path, tokens, runs, agreement_tokens))
    for name, (other_rate, other_ttft, other_replies) in measured.items():
        same = sum(a == b for a, b in zip(replies, other_replies, strict=True))
        result[name] = {
            "tokens_per_s": other_rate,
            "first_token_ms": other_ttft,
            "over_configured": round(other_rate / rate, 2) if rate else None,
            "same_greedy_replies": f"{same}/{len(replies)}",
        }
    plain = (
        (rate if configured == "llama_cpp" and not result["adapter"] else None)
        or (measured.get("llama_cpp_no_adapter") or (None,))[0]
        or (measured.get("llama_cpp") or (None,))[0]
    )
    if plain:
        result["llama_cpp_tokens_per_s"] = plain
        result["configured_over_llama_cpp_plain"] = round(rate / plain, 2)
    result["conversation"] = conversation_first_token(lm)
    return result


def _baselines_in_child(
    config_path: str | None, tokens: int, runs: int, agreement_tokens: int
) -> dict[str, tuple[float, float, list[str]]]:
    """The torch-only baselines (float32 weights through the model's forward, as before the block kernel; bfloat16),
    measured in a child process with OpenMP's default wait policy: this process tells OpenMP to wait passively
    (``voiceos/__init__.py``), which slows torch's own decoding and would make it look slower than it is."""
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
    """What :func:`_baselines_in_child` runs: the float32 weights through the model's forward, bfloat16 (CPU
    only)."""
    from voiceos import models
    from voiceos.dialogue.lm import DialogueLM

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
    the last reply left (what the pipeline does), then from the persona's cache only (``reset()``: the whole history
    prefilled again). Turns after the first are reported (the first has no history); the replies must be the same.
    (The two share llama.cpp's context; greedy, both leave it holding the same tokens.)"""
    reuse, fresh = lm.with_options(), lm.with_options()
    history: list[dict[str, str]] = []
    ttft: dict[str, list[float]] = {"reuse": [], "fresh": []}
    same, prompt_tokens, reused = 0, [], []
    for turn, text in enumerate(turns):
        answer = reuse.reply(history, text, max_new_tokens=tokens)
        reuse_stats = reuse.last_stats
        fresh.reset()
        plain = fresh.reply(history, text, max_new_tokens=tokens)
        if turn:
            ttft["fresh"].append(fresh.last_stats.ttft_s * 1000)
            ttft["reuse"].append(reuse_stats.ttft_s * 1000)
            prompt_tokens.append(reuse_stats.prompt_tokens)
            reused.append(reuse_stats.reused_tokens)
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
