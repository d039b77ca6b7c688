"""The dialogue language model: a chat-templated causal LM driven by an explicit, cancellable decoding loop.

The embedded default is SmolLM2-135M-Instruct as a Q4_1 GGUF, dequantized once and cached (see ``loading``).
Decoding is a hand-written loop (one prefill pass, then one forward per token over a KV cache) rather than
``model.generate`` so that callers can read the prefill's hidden states and stop at any token.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voiceos import models
from voiceos.config import DialogueOptions
from voiceos.dialogue.adapter import apply_configured_adapter, set_adapter_enabled
from voiceos.dialogue.blocks import use_gguf_blocks
from voiceos.dialogue.decode_step import LlamaDecodeStep
from voiceos.dialogue.detokenizer import IncrementalDetokenizer
from voiceos.dialogue.emotion_pass import EmotionPass
from voiceos.dialogue.hf_cache import cache_kwargs, output_cache
from voiceos.dialogue.loading import ensure_chat_template, from_pretrained, load_gguf_cached
from voiceos.dialogue.model import DialogueModel
from voiceos.dialogue.prompt_cache import PromptCache, prefill_system_turn
from voiceos.dialogue.sampling import seen_tokens, stream_tokens
from voiceos.dialogue.types import ChatPrompt, EmotionHook, GenerationStats, Messages
from voiceos.emotion.features import user_turn_prompt
from voiceos.emotion.head import EmotionHead
from voiceos.emotion.labels import EmotionResult
from voiceos.errors import ModelLoadError, ModelNotFoundError, TextInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefillResult:
    """The prompt's forward pass: next-token logits, final-layer hidden states and the KV cache to decode from."""

    logits: torch.Tensor  # (1, vocab), float32, for the token after the prompt
    hidden_states: torch.Tensor  # (1, seq, hidden), the last layer's output over the whole prompt
    cache: Any  # a transformers DynamicCache holding the prompt's keys and values


class DialogueLM(ChatPrompt):
    """A loaded chat model; build it with :meth:`load`. One reply streams at a time per instance."""

    def __init__(self, model: Any, tokenizer: Any, options: DialogueOptions, *, name: str, source: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.source = source  # where the weights were read from (the cache directory for a GGUF)
        self.load_s = 0.0
        self.block_matrices = 0  # weight matrices whose single-token products read the GGUF's blocks (blocks.py)
        self.adapter: str | None = None  # the fine-tuned adapter's directory, if one is applied (adapter.py)
        self._adapter_on = True
        self.last_stats = GenerationStats()
        self._name = name
        self.stop_ids = _stop_token_ids(model, tokenizer)
        self.dialogue_model = DialogueModel(model)
        # each decoded token outside transformers' forward (the same operations and logits), where the model allows
        self.decode_step = LlamaDecodeStep.build(model) if options.lean_decode else None
        self._persona: dict[str, tuple[list[int], Any]] = {}  # system prompt -> its tokens and their KV cache
        self.prompt_cache = PromptCache(self.persona_prefix, self._new_cache)
        self._emotion_pass: EmotionPass | None = None  # read_emotion's, built at its first call

    def attach_emotion_head(self, head: EmotionHead, labels: Sequence[str]) -> None:
        """Read the user's emotion off every reply's prefill from now on (see :class:`DialogueModel`)."""
        if not self.dialogue_model.fits(head, labels):
            raise ModelLoadError(
                f"the emotion head ({head.in_dim} features, {head.n_labels} outputs) does not fit the dialogue model "
                f"{self.name}; train one for it with `voiceos train`, or set emotion.enabled: false"
            )
        try:  # a head with an LM branch copies this LM's layers: its adapters must fit them
            self.dialogue_model = DialogueModel(self.model, head, labels)
            self._emotion_pass = None
        except ValueError as err:
            raise ModelLoadError(f"the emotion head does not fit the dialogue model {self.name}: {err}") from None

    @property
    def has_emotion_head(self) -> bool:
        return self.dialogue_model.emotion_head is not None

    @classmethod
    def load(cls, options: DialogueOptions, plan: models.DevicePlan, *, threads: int = 0) -> DialogueLM:
        """Load ``options.model``: ``embedded``, a local directory (optionally with ``gguf_file``) or a hub id."""
        start = time.perf_counter()
        if threads > 0 and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        cache_root = models.cache_dir(options.cache_dir) / "lm"
        dtype = getattr(torch, plan.lm_dtype)
        name, path = options.model, Path(options.model).expanduser()
        gguf: Path | None = None
        if options.model == models.EMBEDDED_LM:
            gguf = models.embedded_lm_gguf()
            name = f"embedded:{gguf.stem}"
            model, tokenizer, source = load_gguf_cached(gguf, cache_root, dtype)
        elif path.is_dir() and options.gguf_file:
            gguf = path / options.gguf_file
            if not gguf.is_file():
                raise ModelNotFoundError(f"dialogue model directory {path} has no GGUF file {options.gguf_file}")
            model, tokenizer, source = load_gguf_cached(gguf, cache_root, dtype)
        elif path.is_dir():
            model, tokenizer, source = *from_pretrained(str(path), name, dtype), str(path)
        elif path.is_absolute() or options.model.startswith((".", "~")):
            raise ModelNotFoundError(f"dialogue model directory {path} does not exist")
        else:  # a hub id: transformers reads its own cache or downloads it (where the network allows)
            model, tokenizer, source = *from_pretrained(name, name, dtype, gguf_file=options.gguf_file), name
        ensure_chat_template(tokenizer, name)
        if getattr(model, "is_quantized", False):  # loaded in its dtype; quantized models refuse a cast
            model.to(plan.torch_device)
        else:
            model.to(device=plan.torch_device, dtype=dtype)
        model.eval()
        block_matrices = 0
        if gguf is not None and options.block_kernel:
            cached = Path(source) if Path(source).is_dir() else None
            block_matrices = use_gguf_blocks(model, gguf, cached)
        adapter = apply_configured_adapter(model, options, name)
        lm = cls(model, tokenizer, options, name=name, source=source)
        lm.block_matrices = block_matrices
        lm.adapter = adapter
        lm.load_s = time.perf_counter() - start
        log.info(
            "dialogue LM %s loaded from %s in %.1f s (%s, %s%s%s%s)",
            name,
            source,
            lm.load_s,
            lm.device,
            plan.lm_dtype,
            f", decoding from {block_matrices} GGUF block matrices" if block_matrices else "",
            ", lean decode step" if lm.decode_step is not None else "",
            f", adapter {adapter}" if adapter else "",
        )
        return lm

    def with_options(self, **changes: Any) -> DialogueLM:
        """This model with other decoding options (e.g. ``temperature``, ``seed``); the weights are shared."""
        other = copy.copy(self)
        other.options = dataclasses.replace(self.options, **changes)
        if other.options.lean_decode != self.options.lean_decode:
            other.decode_step = LlamaDecodeStep.build(self.model) if other.options.lean_decode else None
        other.last_stats = GenerationStats()
        other.prompt_cache = PromptCache(other.persona_prefix, other._new_cache)  # its own conversation
        other._emotion_pass = None
        return other

    @property
    def name(self) -> str:
        return self._name

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- prompting -------------------------------------------------------------------------------------------------
    def build_prompt(self, messages: Messages) -> torch.Tensor:
        """Token ids (1, seq) of ``messages`` through the chat template, ending with the assistant's turn opener."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.model.device)

    def fit_prompt(self, messages: Messages, max_new_tokens: int) -> torch.Tensor:
        """Drop the oldest history messages until the prompt fits max_prompt_tokens and the model's context."""
        context = (getattr(self.model.config, "max_position_embeddings", None) or 1 << 30) - max_new_tokens
        budget = min(context, self.options.max_prompt_tokens)
        ids = self.build_prompt(messages)
        first = 1 if messages[0]["role"] == "system" else 0
        while ids.shape[1] > budget and len(messages) - first > 1:
            del messages[first]
            ids = self.build_prompt(messages)
        if ids.shape[1] > budget:
            raise TextInputError(
                f"the message is too long for the dialogue model ({ids.shape[1]} tokens; {budget} fit)"
            )
        return ids

    # -- decoding --------------------------------------------------------------------------------------------------
    def prefill(self, input_ids: torch.Tensor) -> PrefillResult:
        """Run the prompt through the model once, filling a fresh KV cache."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                **cache_kwargs(self.model, cache),
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
            )
        return PrefillResult(out.logits[:, -1, :].float(), out.hidden_states[-1], output_cache(out))

    def persona_prefix(self, system: str) -> tuple[list[int], Any]:
        """The system turn's token ids and their KV cache, computed once per system prompt (do not modify the cache:
        copy it). The persona opens every prompt and never changes between turns, so it is not prefilled again."""
        if system not in self._persona:
            cache = self._new_cache()
            prefix = prefill_system_turn(self.model, self.tokenizer, system, cache)
            self._persona = {system: (prefix, cache)}  # one persona at a time
        return self._persona[system]

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _prefill_fast(self, messages: Messages, input_ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """:meth:`prefill`'s logits and cache, starting from what :attr:`prompt_cache` holds of the prompt."""
        ids = input_ids[0].tolist()
        start, cache = self.prompt_cache.start(messages, ids, len(ids) - 1)
        self.last_stats.reused_tokens = start
        out = self.dialogue_model(torch.tensor([ids[start:]], device=self.model.device), cache=cache)
        return out.logits, out.cache

    def _prefill_with_emotion(
        self, messages: Messages, input_ids: torch.Tensor, on_emotion: EmotionHook
    ) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """The prefill in two steps (user turn -> emotion -> optional note + opener): logits, cache, whole prompt."""
        user_ids, span = user_turn_prompt(self.tokenizer, messages)
        full = input_ids[0].tolist()
        if full[: len(user_ids)] != user_ids:  # a template that does not end the user turn the same way
            log.warning("chat template: the user turn is not a prefix of the prompt; no emotion for this turn")
            return *self._prefill_fast(messages, input_ids), input_ids
        device = self.model.device
        first, self.last_stats.reused_tokens = self._prefill_user_turn(messages, user_ids, span)
        note = on_emotion(self.dialogue_model.emotion(first.emotion_logits))
        if note:
            noted = self.prompt_with_note(messages, note)
            if noted is not None and noted[: len(user_ids)] == user_ids:
                full = noted
            else:
                log.debug("chat template cannot take a note after the user's turn; replying without it")
        rest = torch.tensor([full[len(user_ids) :]], device=device)
        second = self.dialogue_model(rest, cache=first.cache)
        return second.logits, second.cache, torch.tensor([full], device=device)

    def _prefill_user_turn(self, messages: Messages, user_ids: list[int], span: tuple[int, int]) -> tuple[Any, int]:
        """The prompt up to the end of the user's turn through the model with the emotion head, from what the prompt
        cache holds of it (the user's text is all new): the output, and how many leading tokens were reused."""
        start, cache = self.prompt_cache.start(messages, user_ids, span[0])
        user_span = (max(0, span[0] - start), max(1, span[1] - start))
        ids = torch.tensor([user_ids[start:]], device=self.model.device)
        out = self.dialogue_model(ids, cache=cache, user_span=user_span)
        assert out.emotion_logits is not None
        return out, start

    def read_emotion(
        self, history: Messages, user_text: str, *, system_prompt: str | None = None, extra_system: str | None = None
    ) -> EmotionResult | None:
        """The user's emotion from the prefill of their turn alone (no reply): what a backend whose replies come from
        elsewhere asks of the embedded model (llama_cpp_lm, openai_chat). None without a head."""
        if not self.has_emotion_head:
            return None
        messages = self.messages_for(history, user_text, system_prompt=system_prompt, extra_system=extra_system)
        self.fit_prompt(messages, 1)  # the oldest history goes first, as for a reply
        return self.emotion_of(messages)

    def emotion_of(self, messages: Messages) -> EmotionResult:
        """The emotion of the last (user) turn of ``messages``, a prompt already fitted (:meth:`fit_prompt`)."""
        if self.dialogue_model.layer < self.model.config.num_hidden_layers:  # the head reads a middle layer
            if self._emotion_pass is None:
                self._emotion_pass = EmotionPass(self.dialogue_model, self.tokenizer)
            return self._emotion_pass.read(messages)
        user_ids, span = user_turn_prompt(self.tokenizer, messages)
        out, _ = self._prefill_user_turn(messages, user_ids, span)
        self.prompt_cache.keep(user_ids, out.cache)  # the next turn's prompt starts with this one
        return self.dialogue_model.emotion(out.emotion_logits)

    def reset(self) -> None:
        """A new conversation: the KV cache of the old one goes (the persona's stays)."""
        self.prompt_cache.clear()
        if self._emotion_pass is not None:
            self._emotion_pass.clear()

    def prompt_with_note(self, messages: Messages, note: str) -> list[int] | None:
        try:
            return self.build_prompt([*messages, {"role": "system", "content": note}])[0].tolist()
        except Exception as err:  # some chat templates refuse a system message after the first
            log.debug("chat template refused a late system note: %s", err)
            return None

    def _forward_one(self, token: int, cache: Any) -> torch.Tensor:
        if self.decode_step is not None and hasattr(cache, "layers"):  # (a transformers cache with layers)
            return self.decode_step(token, cache)
        ids = torch.tensor([[token]], dtype=torch.long, device=self.model.device)
        with torch.inference_mode():  # per call, not around the yields: grad mode is thread state the caller shares
            return self.model(input_ids=ids, **cache_kwargs(self.model, cache), use_cache=True).logits[:, -1, :].float()

    def stream_reply(
        self,
        history: Messages,
        user_text: str,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
        extra_system: str | None = None,
        on_emotion: EmotionHook | None = None,
        use_adapter: bool = True,
    ) -> Generator[str, None, None]:
        """Yield the reply's text as it is decoded; ``close()`` the generator to stop decoding at once.

        The deltas never split a character and add up to ``tokenizer.decode(last_stats.token_ids,
        skip_special_tokens=True)``. :attr:`last_stats` is filled in as the reply streams. With an emotion head
        attached, ``on_emotion`` gets the user's emotion from the prefill before the first token is picked; the text
        it returns (if any) joins the context as a system note after the user's turn. ``use_adapter=False`` replies
        with the base model (the fine-tuned adapter is trained for short replies: a story is the base model's).
        """
        self._switch_adapter(use_adapter)
        start = time.perf_counter()
        limit = max_new_tokens or self.options.max_new_tokens
        messages = self.messages_for(history, user_text, system_prompt=system_prompt, extra_system=extra_system)
        input_ids = self.fit_prompt(messages, limit)
        stats = self.last_stats = GenerationStats(prompt_tokens=int(input_ids.shape[1]))
        detok = IncrementalDetokenizer(self.tokenizer)
        stop_reason = "error"
        try:
            if on_emotion is not None and self.has_emotion_head:
                logits, cache, input_ids = self._prefill_with_emotion(messages, input_ids, on_emotion)
                stats.prompt_tokens = int(input_ids.shape[1])
            else:
                logits, cache = self._prefill_fast(messages, input_ids)
            stats.prefill_s = time.perf_counter() - start
            fed = input_ids[0].tolist()  # what the cache holds: the prompt, then each token fed back

            def feed(token: int) -> torch.Tensor:
                fed.append(token)
                return self._forward_one(token, cache)

            stop_reason = yield from stream_tokens(
                logits,
                feed,
                limit=limit,
                seen=seen_tokens(fed, logits.shape[-1]).to(logits.device),  # for repetition_penalty
                options=self.options,
                stop_ids=self.stop_ids,
                detok=detok,
                stats=stats,
                started=start,
            )
        except GeneratorExit:
            stop_reason = "cancelled"
            raise
        finally:
            if stop_reason != "error":  # the next turn's prompt repeats this one and (much of) the reply
                self.prompt_cache.keep(fed, cache)
            stats.stop_reason = stop_reason
            stats.total_s = time.perf_counter() - start
            stats.token_ids = tuple(detok.ids)
            log.debug("reply: %s", stats)

    def _switch_adapter(self, on: bool) -> None:
        """Set the (shared) model's adapter on or off for this reply; this instance's KV caches, made the other way
        (layers 14-29 differ), are dropped."""
        if self.adapter is None:
            return
        set_adapter_enabled(self.model, on)
        if on != self._adapter_on:
            self._adapter_on = on
            self._persona = {}
            self.prompt_cache.clear()
            self._emotion_pass = None  # (an adapter on the layers it reads changes them too)

    def reply(self, history: Messages, user_text: str, **kwargs: Any) -> str:
        """The whole reply as one string (the arguments are :meth:`stream_reply`'s)."""
        return "".join(self.stream_reply(history, user_text, **kwargs))


def _stop_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """eos ids from the generation config, the model config and the tokenizer, plus ChatML's ``<|im_end|>``."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        ids.update(value if isinstance(value, (list, tuple)) else [] if value is None else [value])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return frozenset(ids)
