"""Picking each token of a reply from the logits, the same way for every decoder of the embedded model (torch's
and llama.cpp's), so that a decoder changes how fast a reply comes and not how it is chosen."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator
from typing import Any

import torch

from voiceos.config import DialogueOptions


def seen_tokens(prompt_ids: list[int], vocab_size: int) -> torch.Tensor:
    """A (vocab,) mask of the tokens the repetition penalty applies to: the prompt's, then each token picked."""
    seen = torch.zeros(vocab_size, dtype=torch.bool)
    ids = torch.tensor([i for i in prompt_ids if 0 <= i < vocab_size], dtype=torch.long)
    seen[ids] = True
    return seen


def generator_for(options: DialogueOptions, device: str | torch.device = "cpu") -> torch.Generator | None:
    """A seeded generator when sampling with ``options.seed``; None when greedy or unseeded (the global RNG)."""
    if options.temperature == 0 or options.seed is None:
        return None
    return torch.Generator(device=device).manual_seed(options.seed)


def opening_options(options: DialogueOptions) -> DialogueOptions | None:
    """How the first ``opening_tokens`` of a greedy reply are picked when ``opening_temperature`` samples them."""
    if options.temperature > 0 or options.opening_temperature == 0:
        return None
    return dataclasses.replace(options, temperature=options.opening_temperature)


def pick_token(
    logits: torch.Tensor, seen: torch.Tensor, options: DialogueOptions, generator: torch.Generator | None
) -> int:
    """The next token: repetition penalty, then greedy or temperature / top-k / top-p sampling (as HF does)."""
    if options.repetition_penalty != 1.0:
        penalized = torch.where(logits < 0, logits * options.repetition_penalty, logits / options.repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    if options.temperature == 0:
        return int(logits.argmax(dim=-1))
    logits = logits / options.temperature
    if options.top_k > 0:
        kth = torch.topk(logits, min(options.top_k, logits.shape[-1])).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - options.top_p)
        remove[..., -1:] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), float("-inf"))
    return int(torch.multinomial(logits.softmax(dim=-1), num_samples=1, generator=generator))


def stream_tokens(
    logits: torch.Tensor,
    feed: Callable[[int], torch.Tensor],
    *,
    limit: int,
    seen: torch.Tensor,
    options: DialogueOptions,
    stop_ids: frozenset[int],
    detok: Any,
    stats: Any,
    started: float,
) -> Generator[str, None, str]:
    """The decoding loop: pick a token from ``logits``, yield the text it adds (``detok``, an
    :class:`~voiceos.dialogue.detokenizer.IncrementalDetokenizer`), ``feed`` it to the model for the next logits,
    until a stop token or ``limit`` tokens. Counts into ``stats`` (a GenerationStats; ``started``: the reply's
    perf_counter start, for the time to first token); returns why it stopped (``eos`` or ``max_tokens``)."""
    opening = opening_options(options)
    generator = generator_for(opening or options, logits.device)
    reason = "max_tokens"
    for step in range(limit):
        token = pick_token(logits, seen, opening if opening and step < options.opening_tokens else options, generator)
        stats.steps += 1
        if step == 0:
            stats.ttft_s = time.perf_counter() - started
        if token in stop_ids:
            reason = "eos"
            break
        stats.tokens += 1
        seen[token] = True
        delta = detok.push(token)
        if delta:
            yield delta
        if step + 1 < limit:
            logits = feed(token)
    tail = detok.finish()
    if tail:
        yield tail
    return reason
