"""The lean decode step (voiceos/dialogue/decode_step.py) on the real embedded SmolLM2: its logits are the model's
own forward's bit for bit, its in-place KV cache works with everything that uses transformers' cache, and a model it
does not fit decodes through the forward."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from voiceos.bench_lm import AGREEMENT_PROMPTS
from voiceos.dialogue import decode_step
from voiceos.dialogue.decode_step import LlamaDecodeStep
from voiceos.dialogue.lm import DialogueLM


@pytest.fixture(scope="module")
def forward_lm(lm: DialogueLM) -> DialogueLM:
    """The session's LM (same weights) decoding each token through transformers' forward."""
    other = lm.with_options(lean_decode=False)
    assert other.decode_step is None
    return other


def _prefilled(lm: DialogueLM, text: str) -> tuple[torch.Tensor, Any]:
    messages = lm.messages_for([], text)
    logits, cache = lm._prefill_fast(messages, lm.fit_prompt(messages, 64))
    lm.prompt_cache.clear()
    return logits, cache


def _greedy_logits(forward: Callable[[int, Any], torch.Tensor], logits: torch.Tensor, cache: Any, n: int) -> list:
    out = []
    for _ in range(n):
        logits = forward(int(logits.argmax()), cache)
        out.append(logits)
    return out


def test_the_embedded_lm_decodes_through_the_lean_step(lm: DialogueLM) -> None:
    assert isinstance(lm.decode_step, LlamaDecodeStep)


def test_the_steps_logits_and_kv_cache_are_the_models_own_bit_for_bit(lm: DialogueLM, forward_lm: DialogueLM) -> None:
    logits, cache = _prefilled(lm, AGREEMENT_PROMPTS[1])
    twin = copy.deepcopy(cache)
    stepped = _greedy_logits(lm.decode_step, logits, cache, 24)
    forwarded = _greedy_logits(forward_lm._forward_one, logits, twin, 24)
    for i, (a, b) in enumerate(zip(stepped, forwarded, strict=True)):
        assert torch.equal(a, b), f"token {i}: max difference {(a - b).abs().max():.3g}"
    assert cache.get_seq_length() == twin.get_seq_length()
    for mine, theirs in zip(cache.layers, twin.layers, strict=True):
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)


def test_a_kv_buffer_that_runs_out_of_room_is_reallocated_without_losing_a_token(
    lm: DialogueLM, forward_lm: DialogueLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_step, "SPARE_TOKENS", 2)  # reallocated every third token
    logits, cache = _prefilled(lm, AGREEMENT_PROMPTS[4])
    twin = copy.deepcopy(cache)
    stepped = _greedy_logits(lm.decode_step, logits, cache, 10)
    forwarded = _greedy_logits(forward_lm._forward_one, logits, twin, 10)
    assert all(torch.equal(a, b) for a, b in zip(stepped, forwarded, strict=True))


def test_a_conversation_reusing_the_steps_cache_gets_the_same_replies_as_the_models_forward(
    lm: DialogueLM, forward_lm: DialogueLM
) -> None:
    """Later turns start from the cache the last reply grew in place (cropped to the common prefix, then prefilled
    by transformers, which concatenates): every reply must still be the forward's, token for token."""
    lean, plain = lm.with_options(), forward_lm.with_options()
    history: list[dict[str, str]] = []
    for text in AGREEMENT_PROMPTS[:4]:
        answer = lean.reply(history, text, max_new_tokens=32)
        assert answer == plain.reply(history, text, max_new_tokens=32), text
        assert lean.last_stats.token_ids == plain.last_stats.token_ids
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
    assert lean.last_stats.reused_tokens > 0  # the cache was reused


def test_models_the_step_does_not_fit_decode_through_their_forward(
    lm: DialogueLM, caplog: pytest.LogCaptureFixture
) -> None:
    class Wrapped(nn.Module):  # e.g. an adapter around a projection
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    wrapped = copy.deepcopy(lm.model)
    wrapped.model.layers[3].mlp.up_proj = Wrapped(wrapped.model.layers[3].mlp.up_proj)
    with caplog.at_level(logging.INFO, logger="voiceos.dialogue.decode_step"):
        assert LlamaDecodeStep.build(wrapped) is None
        assert LlamaDecodeStep.build(copy.deepcopy(lm.model).to(torch.bfloat16)) is None
    assert "a changed projection (Wrapped)" in caplog.text
    assert "float32 on the CPU" in caplog.text
    bf16 = DialogueLM(copy.deepcopy(lm.model).to(torch.bfloat16), lm.tokenizer, lm.options, name="bf16", source="")
    assert bf16.decode_step is None
    assert bf16.reply([], AGREEMENT_PROMPTS[0], max_new_tokens=8)  # still answers, through the forward
