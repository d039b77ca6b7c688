"""The shipped dialogue adapter at run time (voiceos/dialogue/adapter.py), on the real embedded LM."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from voiceos.dialogue.adapter import (
    EMBEDDED_ADAPTER,
    AdapterError,
    LowRankAdapted,
    apply_adapter,
    apply_configured_adapter,
    merged_copy,
)
from voiceos.dialogue.blocks import without_blocks
from voiceos.dialogue.persona import runtime_system_prompt

PROMPTS = ["I just lost my job and I feel terrible.", "We're having a baby!", "What is the capital of Spain?"]


def base_copy(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every adapter taken off (its base projections, unchanged)."""
    clone = copy.deepcopy(model)
    for path, module in list(clone.named_modules()):
        if isinstance(module, LowRankAdapted):
            parent, _, attr = path.rpartition(".")
            setattr(clone.get_submodule(parent), attr, module.base)
    return clone


def greedy_tokens(model: torch.nn.Module, prompt: torch.Tensor, n: int, stop: frozenset[int]) -> list[int]:
    """Greedy decoding by the model's own full forward over the whole sequence at every step (no cache)."""
    ids, out = prompt.clone(), []
    with torch.inference_mode():
        for _ in range(n):
            token = int(model(input_ids=ids).logits[0, -1].argmax())
            if token in stop:
                break
            out.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


@pytest.fixture(scope="module")
def merged(lm):
    return merged_copy(without_blocks(lm.model)).eval()


def test_the_shipped_adapter_is_applied_beside_the_block_kernel_and_lean_step(lm):
    assert lm.adapter == str(EMBEDDED_ADAPTER)
    adapted = [m for m in lm.model.modules() if isinstance(m, LowRankAdapted)]
    assert adapted and lm.block_matrices > 0 and lm.decode_step is not None


def test_adapted_fast_decoding_gives_the_merged_models_tokens(lm, test_config, merged):
    greedy = lm.with_options(repetition_penalty=1.0, temperature=0.0)
    system = runtime_system_prompt(test_config)
    for text in PROMPTS:
        greedy.reply([], text, system_prompt=system, max_new_tokens=32)
        fast = list(greedy.last_stats.token_ids)
        prompt = lm.build_prompt(lm.messages_for([], text, system_prompt=system))
        assert fast == greedy_tokens(merged, prompt, 32, lm.stop_ids), text


def test_the_adapter_changes_the_reply_logits_but_not_what_the_emotion_head_reads(lm, test_config):
    base = base_copy(without_blocks(lm.model)).eval()
    adapted = without_blocks(lm.model).eval()
    prompt = lm.build_prompt(lm.messages_for([], PROMPTS[0], system_prompt=runtime_system_prompt(test_config)))
    layer = lm.dialogue_model.layer
    with torch.inference_mode():
        a = adapted(input_ids=prompt, output_hidden_states=True)
        b = base(input_ids=prompt, output_hidden_states=True)
    assert torch.equal(a.hidden_states[layer], b.hidden_states[layer])  # the head's input: bit for bit the base's
    assert (a.logits[0, -1] - b.logits[0, -1]).abs().max() > 0.1  # the adapter does change the reply


def _fake_adapter(directory, rows: int, cols: int) -> None:
    directory.mkdir()
    (directory / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    key = "base_model.model.model.layers.20.self_attn.q_proj"
    save_file(
        {f"{key}.lora_A.weight": torch.zeros(4, cols), f"{key}.lora_B.weight": torch.zeros(rows, 4)},
        str(directory / "adapter_model.safetensors"),
    )


def test_an_adapter_that_does_not_fit_is_refused_in_one_line_and_changes_nothing(lm, tmp_path):
    before = sum(isinstance(m, LowRankAdapted) for m in lm.model.modules())
    _fake_adapter(tmp_path / "other", rows=960, cols=960)  # a wider model's q_proj
    with pytest.raises(AdapterError, match="does not fit") as err:
        apply_adapter(lm.model, tmp_path / "other")
    assert "\n" not in str(err.value)
    with pytest.raises(AdapterError, match=r"has no adapter_config\.json"):
        apply_adapter(lm.model, tmp_path / "missing")
    assert sum(isinstance(m, LowRankAdapted) for m in lm.model.modules()) == before


def test_adapter_null_or_another_model_leaves_the_model_as_it_is(test_config):
    model = torch.nn.Linear(2, 2)
    off = dataclasses.replace(test_config.dialogue, adapter=None)
    assert apply_configured_adapter(model, off, "embedded") is None
    other = dataclasses.replace(test_config.dialogue, model="HuggingFaceTB/SmolLM2-360M-Instruct")
    assert apply_configured_adapter(model, other, "smollm2-360m") is None  # the shipped one is for the embedded LM


def test_a_reply_without_the_adapter_is_the_base_models_and_switching_back_restores_it(lm, test_config, merged):
    """What the pipeline does when the user asks for detail: the caches made with the adapter are not reused."""
    greedy = lm.with_options(repetition_penalty=1.0, temperature=0.0)
    system = runtime_system_prompt(test_config)
    base = base_copy(without_blocks(lm.model)).eval()
    text = "Tell me a story about a dragon."
    prompt = lm.build_prompt(lm.messages_for([], text, system_prompt=system))
    greedy.reply([], PROMPTS[1], system_prompt=system, max_new_tokens=8)  # caches made with the adapter
    greedy.reply([], text, system_prompt=system, max_new_tokens=24, use_adapter=False)
    assert list(greedy.last_stats.token_ids) == greedy_tokens(base, prompt, 24, lm.stop_ids)
    greedy.reply([], text, system_prompt=system, max_new_tokens=24)
    assert list(greedy.last_stats.token_ids) == greedy_tokens(merged, prompt, 24, lm.stop_ids)
