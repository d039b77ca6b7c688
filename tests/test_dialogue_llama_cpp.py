"""The default decoder of the embedded model: llama.cpp in process, with the shipped adapter converted for it, the
torch model's prompt and emotion head, KV-cache reuse across turns and cancellation at the next token."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from voiceos.dialogue.adapter import EMBEDDED_ADAPTER, WEIGHTS_FILE, AdapterError, set_adapter_enabled
from voiceos.dialogue.backend import choose_decoder
from voiceos.dialogue.llama_cpp_lm import batch_size, gguf_path
from voiceos.dialogue.lora_gguf import gguf_lora, rotary_permuted, write_gguf_lora
from voiceos.errors import ModelLoadError
from voiceos.models import AsrPlan, DevicePlan, embedded_lm_gguf

PERSONA = "You are Milo, a kind voice assistant. Answer in one short sentence."
PROMPTS = (
    "What is the capital of France?",
    "My dog died yesterday and I miss him so much.",
    "How do I boil an egg?",
    "I got the job! I am so happy today!",
)


def _llama_logits(llama_lm, ids: list[int], adapter: bool) -> np.ndarray:
    llama_lm._switch_adapter(adapter)
    llama_lm.llama.n_tokens = 0
    llama_lm.llama.eval(ids)
    return llama_lm._logits().numpy().copy()


def _torch_logits(lm, ids: list[int], adapter: bool) -> np.ndarray:
    set_adapter_enabled(lm.model, adapter)
    try:
        with torch.inference_mode():
            return lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()
    finally:
        set_adapter_enabled(lm.model, True)


def test_llama_cpp_applies_the_converted_adapter_as_torch_applies_the_peft_one(lm, llama_lm):
    ids = lm.build_prompt(lm.messages_for([], PROMPTS[1], system_prompt=PERSONA))[0].tolist()
    torch_base, torch_tuned = _torch_logits(lm, ids, False), _torch_logits(lm, ids, True)
    llama_base, llama_tuned = _llama_logits(llama_lm, ids, False), _llama_logits(llama_lm, ids, True)
    # the same model (int8 activations in llama.cpp: close, not equal) ...
    assert np.corrcoef(torch_base, llama_base)[0, 1] > 0.99
    # ... and the adapter moves the logits the same way (a mis-permuted q/k or a wrong scale would not)
    assert np.corrcoef(torch_tuned - torch_base, llama_tuned - llama_base)[0, 1] > 0.95


def test_rotary_permutation_interleaves_the_two_halves_of_each_head():
    rows = np.arange(8, dtype=np.float32).reshape(8, 1)  # 2 heads of 4 rows: halves (0 1 | 2 3), (4 5 | 6 7)
    assert rotary_permuted(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


@pytest.mark.parametrize(("projection", "tensor", "heads"), [("q_proj", "attn_q", 9), ("k_proj", "attn_k", 3)])
def test_lora_b_rows_follow_the_gguf_layout_of_q_and_k(lm, projection, tensor, heads):
    """The GGUF stores q and k with their rows permuted (transformers undoes it on load): permuting the torch
    model's rows as lora_gguf permutes lora_b gives back the GGUF's own matrix."""
    import gguf

    reader = gguf.GGUFReader(str(embedded_lm_gguf()))
    stored = next(t for t in reader.tensors if t.name == f"blk.3.{tensor}.weight")
    in_gguf = gguf.quants.dequantize(stored.data, stored.tensor_type)
    loaded = getattr(lm.model.model.layers[3].self_attn, projection).weight.detach().numpy()
    assert np.array_equal(rotary_permuted(loaded, heads), in_gguf)
    assert not np.array_equal(loaded, in_gguf)


def test_the_converted_adapter_is_cached_and_made_again_when_the_adapter_changes(tmp_path):
    gguf = embedded_lm_gguf()
    first = gguf_lora(EMBEDDED_ADAPTER, gguf, tmp_path / "cache")
    made_at = first.stat().st_mtime_ns
    assert gguf_lora(EMBEDDED_ADAPTER, gguf, tmp_path / "cache") == first and first.stat().st_mtime_ns == made_at
    retrained = tmp_path / "retrained"
    shutil.copytree(EMBEDDED_ADAPTER, retrained)
    with (retrained / WEIGHTS_FILE).open("r+b") as f:  # another training run: other weights
        f.seek(-4, 2)
        f.write(b"\x01\x02\x03\x04")
    assert gguf_lora(retrained, gguf, tmp_path / "cache") != first
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")] == []  # no partial files


def test_an_adapter_for_another_model_is_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other"
    shutil.copytree(EMBEDDED_ADAPTER, other)
    save_file(
        {
            "base_model.model.model.vision.proj.lora_A.weight": torch.zeros(8, 4),
            "base_model.model.model.vision.proj.lora_B.weight": torch.zeros(4, 8),
        },
        str(other / WEIGHTS_FILE),
    )
    with pytest.raises(AdapterError, match="no tensor in"):
        write_gguf_lora(other, embedded_lm_gguf(), tmp_path / "out.gguf")


def test_a_conversation_reuses_llama_cpps_kv_cache_and_reset_keeps_the_persona(llama_lm):
    lm = llama_lm.with_options()
    history: list[dict[str, str]] = []
    first = lm.reply(history, "My name is Ada.", system_prompt=PERSONA)
    prompt = lm.last_stats.prompt_tokens
    history += [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": first}]
    lm.reply(history, "What is my name?", system_prompt=PERSONA)
    assert lm.last_stats.reused_tokens >= prompt  # the first prompt and (much of) its reply
    lm.reset()
    lm.reply([], "Hello again.", system_prompt=PERSONA)
    system = lm.local.tokenizer.apply_chat_template([{"role": "system", "content": PERSONA}], tokenize=False)
    assert lm.last_stats.reused_tokens == len(lm.local.tokenizer(system, add_special_tokens=False)["input_ids"])


def test_closing_the_reply_stops_llama_cpp_at_the_next_token(llama_lm):
    lm = llama_lm.with_options()
    deltas = lm.stream_reply([], "Tell me a long story about a dragon who bakes bread.", max_new_tokens=80)
    next(deltas)
    deltas.close()
    assert lm.last_stats.stop_reason == "cancelled" and lm.last_stats.steps <= 3
    assert lm.reply([], "How do I boil an egg?", max_new_tokens=16)  # the context is still usable


def test_the_emotion_is_read_before_the_first_token_and_its_note_joins_the_prompt(llama_lm):
    lm = llama_lm.with_options()
    heard = []

    def on_emotion(result):
        heard.append(result.label)
        return "Note: the user seems sad. Respond to that feeling warmly and briefly."

    deltas = lm.stream_reply([], PROMPTS[1], system_prompt=PERSONA, on_emotion=on_emotion)
    next(deltas)
    deltas.close()
    assert heard == ["sadness"]
    plain = lm.local.fit_prompt(lm.local.messages_for([], PROMPTS[1], system_prompt=PERSONA), 80).shape[1]
    assert lm.last_stats.prompt_tokens > plain


def test_the_base_model_answers_without_the_adapter_and_the_cache_is_not_mixed(llama_lm):
    lm = llama_lm.with_options()
    tuned = lm.reply([], "Tell me a story about a dragon.", max_new_tokens=24)
    base = lm.reply([], "Tell me a story about a dragon.", max_new_tokens=24, use_adapter=False)
    assert lm.last_stats.reused_tokens == 0  # the adapted layers' cache is not reused by the base model
    assert base != tuned
    assert lm.reply([], "Tell me a story about a dragon.", max_new_tokens=24) == tuned


def test_greedy_replies_of_llama_cpp_mostly_start_as_the_torch_decoders(lm, llama_lm):
    """int8 activations move near-ties, so whole replies may part; their openings agree on most prompts."""
    same = 0
    for text in PROMPTS:
        ours = lm.with_options().reply([], text, system_prompt=PERSONA, max_new_tokens=6)
        theirs = llama_lm.with_options().reply([], text, system_prompt=PERSONA, max_new_tokens=6)
        same += ours.split()[:2] == theirs.split()[:2]
    assert same >= len(PROMPTS) // 2 + 1


def test_the_decoder_is_llama_cpp_for_a_gguf_on_the_cpu_and_torch_otherwise(test_config):
    cpu = DevicePlan("cpu", "float32", (), AsrPlan("whisper", "cpu", "int8"))
    cuda = dataclasses.replace(cpu, torch_device="cuda")
    options = test_config.dialogue
    assert gguf_path(options) == embedded_lm_gguf()
    assert choose_decoder(options, cpu)[0] == "llama_cpp"
    assert choose_decoder(dataclasses.replace(options, decoder="torch"), cpu)[0] == "torch"
    assert choose_decoder(options, cuda)[0] == "torch"
    hub = dataclasses.replace(options, model="HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert choose_decoder(hub, cpu) == ("torch", "transformers' forward (the model is not a GGUF file on this machine)")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        choose_decoder(dataclasses.replace(hub, decoder="llama_cpp"), cpu)


def test_the_batch_check_runs_once_per_machine_and_is_remembered(tmp_path):
    assert batch_size(embedded_lm_gguf(), tmp_path) in (1, 512)  # 1 where a batch crashed llama.cpp's child
    (verdict,) = tmp_path.glob("llama-cpp-batch-*.txt")
    verdict.write_text("1\n")  # what a machine where a batch crashed llama.cpp remembers
    assert batch_size(embedded_lm_gguf(), tmp_path) == 1


def test_the_emotion_pass_through_the_heads_layers_reads_what_the_full_prefill_reads(lm):
    """read_emotion runs only the layers the head reads (14 of 30), turn after turn from its own cache, and gets
    exactly what a reply's prefill of the same turns gets."""
    from voiceos.emotion.features import user_turn_prompt

    fast, full = lm.with_options(), lm.with_options()
    history: list[dict[str, str]] = []
    for text in PROMPTS[1:]:
        quick = fast.read_emotion(history, text, system_prompt=PERSONA)
        messages = full.messages_for(history, text, system_prompt=PERSONA)
        ids, span = user_turn_prompt(full.tokenizer, messages)
        out, _ = full._prefill_user_turn(messages, ids, span)
        full.prompt_cache.keep(ids, out.cache)
        assert quick == full.dialogue_model.emotion(out.emotion_logits)
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": "I hear you."}]
