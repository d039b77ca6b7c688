"""DialogueLM on the real embedded SmolLM2 GGUF (loaded once per session; the cache test converts it once more)."""

from __future__ import annotations

import re
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import torch

from voiceos import models
from voiceos.config import DialogueOptions
from voiceos.dialogue import blocks
from voiceos.dialogue.detokenizer import IncrementalDetokenizer
from voiceos.dialogue.hf_cache import cache_kwargs
from voiceos.dialogue.lm import DialogueLM
from voiceos.dialogue.loading import CACHE_MARKER, cache_complete, cache_key
from voiceos.errors import ModelNotFoundError

try:
    GGUF = models.embedded_lm_gguf()
except ModelNotFoundError as err:  # pragma: no cover - the package is a project dependency
    pytest.skip(str(err), allow_module_level=True)

GREETING = "Hello! How are you?"
PERSONA = DialogueOptions().system_prompt


def _show(config: pytest.Config, text: str) -> None:
    """Print past pytest's output capture (timings are reported once, not asserted)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[dialogue-lm] {text}")


@pytest.fixture(scope="session")
def shown_lm(lm: DialogueLM, request: pytest.FixtureRequest) -> DialogueLM:
    """The shared session model (tests/conftest.py), reported once."""
    _show(
        request.config,
        f"{lm.name}: {lm.n_params / 1e6:.1f} M params on {lm.device}, load {lm.load_s:.1f} s",
    )
    return lm


@pytest.fixture(scope="session")
def greeting(shown_lm: DialogueLM, request: pytest.FixtureRequest) -> tuple[list[str], object]:
    """The greedy reply to the greeting, as streamed deltas, with its stats."""
    deltas = list(shown_lm.stream_reply([], GREETING))
    stats = shown_lm.last_stats
    _show(
        request.config,
        f"greedy reply: {''.join(deltas)!r} | TTFT {stats.ttft_s:.3f} s, {stats.tokens} tokens, "
        f"{stats.tokens_per_s:.1f} tok/s, total {stats.total_s:.2f} s ({stats.stop_reason})",
    )
    return deltas, stats


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> tuple[Path, DialogueLM]:
    """A first load into an empty cache, where an earlier first load was killed half-way through its write."""
    root = tmp_path_factory.mktemp("voiceos-cache")
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = root / "lm" / f".{cache_key(GGUF)}.tmp-{dead.pid}-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"\0" * 1024)  # a truncated write
    # bfloat16, as a GPU gets by default: the first load must honour the dtype too (it once kept float32)
    first = DialogueLM.load(DialogueOptions(cache_dir=str(root)), models.plan_devices("auto", lm_dtype="bfloat16"))
    _show(request.config, f"first load (dequantize + save): {first.load_s:.1f} s")
    return root, first


def test_reply_to_a_greeting_is_nonempty_english(greeting: tuple[list[str], object]) -> None:
    text = "".join(greeting[0]).strip()
    assert text
    words = re.findall(r"[A-Za-z']+", text)
    assert len(words) >= 2
    assert sum(c.isascii() for c in text) / len(text) > 0.9


def test_stream_yields_several_deltas_that_add_up_to_the_decoded_output(lm: DialogueLM, greeting) -> None:
    deltas, stats = greeting
    assert len(deltas) >= 3
    assert all(deltas)
    assert "".join(deltas) == lm.tokenizer.decode(list(stats.token_ids), skip_special_tokens=True)
    assert stats.tokens == len(stats.token_ids)
    assert stats.stop_reason in ("eos", "max_tokens")
    assert 0 < stats.ttft_s <= stats.total_s


def test_greedy_decoding_is_deterministic(lm: DialogueLM, greeting) -> None:
    assert lm.reply([], GREETING) == "".join(greeting[0])


def test_sampling_with_a_fixed_seed_is_reproducible_and_other_seeds_differ(lm: DialogueLM) -> None:
    def sample(seed: int) -> str:
        sampler = lm.with_options(temperature=1.0, top_p=0.95, top_k=50, seed=seed)
        return sampler.reply([], "Name a random animal and a colour.", max_new_tokens=12)

    first = sample(7)
    assert sample(7) == first
    assert {sample(8), sample(9)} - {first}


def test_max_new_tokens_bounds_the_reply_length(lm: DialogueLM) -> None:
    text = lm.reply([], "Tell me a long story about a dragon.", max_new_tokens=5)
    stats = lm.last_stats
    assert stats.steps <= 5
    assert stats.tokens <= 5
    assert stats.stop_reason == "max_tokens"
    assert lm.count_tokens(text) <= 6  # re-tokenizing may merge differently, never by much


def test_prompt_holds_the_system_prompt_history_and_user_text_through_the_chat_template(lm: DialogueLM) -> None:
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hi Ada!"}]
    messages = lm.messages_for(history, "What is my name?", extra_system="The user sounds happy.")
    prompt = lm.tokenizer.decode(lm.build_prompt(messages)[0])
    assert prompt.startswith(f"<|im_start|>system\n{PERSONA}\nThe user sounds happy.<|im_end|>\n")
    assert "<|im_start|>user\nMy name is Ada.<|im_end|>\n<|im_start|>assistant\nHi Ada!<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nWhat is my name?<|im_end|>\n<|im_start|>assistant\n")


def test_a_custom_system_prompt_replaces_the_configured_one(lm: DialogueLM) -> None:
    prompt = lm.tokenizer.decode(lm.build_prompt(lm.messages_for([], "Hi", system_prompt="Be a pirate."))[0])
    assert prompt.startswith("<|im_start|>system\nBe a pirate.<|im_end|>")
    assert PERSONA not in prompt


def test_tokenizer_carries_the_ggufs_chatml_template_and_stops_at_im_end(lm: DialogueLM) -> None:
    assert "<|im_start|>" in lm.tokenizer.chat_template
    assert lm.tokenizer.convert_tokens_to_ids("<|im_end|>") == 2
    assert 2 in lm.stop_ids


def test_closing_the_stream_early_stops_decoding(lm: DialogueLM) -> None:
    stream = lm.stream_reply([], "Count from one to fifty, separated by commas.", max_new_tokens=60)
    next(stream)
    stream.close()
    stats = lm.last_stats
    assert stats.stop_reason == "cancelled"
    assert stats.steps <= 3


def test_prefill_returns_logits_hidden_states_and_a_cache_for_the_prompt(lm: DialogueLM) -> None:
    ids = lm.build_prompt(lm.messages_for([], GREETING))
    result = lm.prefill(ids)
    hidden = lm.model.config.hidden_size
    assert tuple(result.hidden_states.shape) == (1, ids.shape[1], hidden)
    assert tuple(result.logits.shape) == (1, lm.model.config.vocab_size)
    assert result.cache.get_seq_length() == ids.shape[1]


def test_the_cache_goes_to_the_model_under_the_name_its_transformers_version_takes(lm: DialogueLM) -> None:
    class Renamed:  # transformers 5.x
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    class Older:  # transformers 4.x
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    assert cache_kwargs(Renamed(), "kv") == {"cache": "kv"}
    assert cache_kwargs(Older(), "kv") == {"past_key_values": "kv"}
    # The installed version: a prefill and a few decoded tokens raise no deprecation warning about the argument
    # (one printed in every `voiceos say` otherwise).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = lm.build_prompt(lm.messages_for([], GREETING))
        assert lm.prefill(ids).cache.get_seq_length() == ids.shape[1]
        assert "".join(lm.stream_reply([], GREETING, max_new_tokens=4))
    assert not [w for w in caught if "past_key_values" in str(w.message) or "cache_params" in str(w.message)]


def test_incremental_detokenizer_never_splits_a_multibyte_character(lm: DialogueLM) -> None:
    text = "Café ☕, 東京 and 😊🎉 — naïve résumé!"
    detok = IncrementalDetokenizer(lm.tokenizer)
    deltas = [detok.push(t) for t in lm.tokenizer(text, add_special_tokens=False)["input_ids"]]
    deltas.append(detok.finish())
    assert not any("\ufffd" in d for d in deltas)
    assert "".join(deltas) == text
    assert sum(1 for d in deltas if d) > 5


def test_first_load_fills_the_cache_atomically_and_later_loads_use_it(fresh_cache, request) -> None:
    root, first = fresh_cache
    target = root / "lm" / cache_key(GGUF)
    assert cache_complete(target)
    assert (target / CACHE_MARKER).is_file()
    assert first.source == str(target)
    assert [p.name for p in (root / "lm").iterdir()] == [target.name]  # the interrupted write's leftover is gone
    assert first.model.dtype == torch.bfloat16  # as asked, though the conversion itself runs in float32

    second = DialogueLM.load(DialogueOptions(cache_dir=str(root)), models.plan_devices("auto"))
    _show(request.config, f"cached load: {second.load_s:.1f} s")
    assert second.source == str(target)
    assert second.load_s < first.load_s
    assert second.count_tokens(GREETING) == first.count_tokens(GREETING)
    assert second.tokenizer.chat_template == first.tokenizer.chat_template
    assert first.block_matrices == 0  # bfloat16: the block kernel computes in float32 only
    if blocks.cpu_supported():  # float32 on the CPU: the GGUF's blocks, kept in the cache for the next load
        assert second.block_matrices > 0 and (target / blocks.BLOCKS_FILE).is_file()
        third = DialogueLM.load(DialogueOptions(cache_dir=str(root)), models.plan_devices("auto"))
        assert third.block_matrices == second.block_matrices

    as_directory = DialogueLM.load(DialogueOptions(model=str(target)), models.plan_devices("auto"))
    assert as_directory.source == str(target)
    assert as_directory.n_params == first.n_params


def test_cache_key_changes_when_the_gguf_file_changes(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"a")
    key = cache_key(gguf)
    gguf.write_bytes(b"ab")
    assert cache_key(gguf) != key
    assert cache_key(gguf).startswith("m-")


def test_an_uncached_hub_id_fails_with_one_line_naming_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    name = "voiceos-tests/no-such-model"
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        DialogueLM.load(DialogueOptions(model=name), models.plan_devices("cpu"))
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert time.perf_counter() - start < 30


def test_a_missing_local_directory_fails_with_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        DialogueLM.load(DialogueOptions(model=str(tmp_path / "nope")), models.plan_devices("cpu"))
    with pytest.raises(ModelNotFoundError, match="no GGUF file"):
        DialogueLM.load(DialogueOptions(model=str(tmp_path), gguf_file="x.gguf"), models.plan_devices("cpu"))


def test_cached_persona_and_split_prefill_decode_the_same_tokens_as_generate(lm: DialogueLM) -> None:
    history = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    text = "Tell me one thing about the moon."
    greedy = lm.with_options(temperature=0.0)
    for on_emotion in (None, lambda result: None):  # plain prefill, and the two-step one that reads the emotion
        for _ in range(2):  # the second reply starts from the cached persona
            "".join(greedy.stream_reply(history, text, max_new_tokens=24, on_emotion=on_emotion))
            ids = lm.build_prompt(lm.messages_for(history, text))
            ref = lm.model.generate(
                ids, max_new_tokens=24, do_sample=False, repetition_penalty=lm.options.repetition_penalty
            )[0, ids.shape[1] :].tolist()
            tokens = list(greedy.last_stats.token_ids)
            assert tokens and tokens == ref[: len(tokens)]


def test_each_turn_reuses_the_last_replys_cache_and_decodes_what_a_fresh_prefill_would(lm: DialogueLM) -> None:
    """The conversation so far is not prefilled again: the next prompt starts from the cache the last reply left
    (its prompt and the tokens it generated). An interrupted reply, remembered shorter, reuses only what matches."""
    greedy = lm.with_options(temperature=0.0)
    persona = len(lm.persona_prefix(lm.options.system_prompt)[0])
    history: list[dict[str, str]] = []
    previous_prompt = 0
    turns = ["Hi! My name is Ada.", "Tell me a long story about a cat.", "What was my name?"]
    for turn, text in enumerate(turns):
        stream = greedy.stream_reply(history, text, max_new_tokens=20)
        if turn == 1:  # interrupted after a few words: only those are remembered
            reply = "".join(next(stream) for _ in range(3))
            stream.close()
            assert greedy.last_stats.stop_reason == "cancelled"
        else:
            reply = "".join(stream)
        stats = greedy.last_stats
        ids = lm.build_prompt(lm.messages_for(history, text))
        ref = lm.model.generate(
            ids, max_new_tokens=20, do_sample=False, repetition_penalty=lm.options.repetition_penalty
        )[0, ids.shape[1] :].tolist()
        assert list(stats.token_ids) == ref[: len(stats.token_ids)] and stats.token_ids
        assert stats.prompt_tokens == ids.shape[1]
        if turn == 0:
            assert stats.reused_tokens == persona
        else:  # the whole previous prompt (and the part of the reply the history repeats) came from the cache
            assert previous_prompt <= stats.reused_tokens < ids.shape[1]
        previous_prompt = stats.prompt_tokens
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
