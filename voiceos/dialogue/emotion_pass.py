"""The user's emotion from the embedded model's prefill of their turn, for a backend whose replies come from elsewhere
(llama.cpp in this process, or an OpenAI-compatible server): only the layers the emotion head reads run.

The head reads ``hidden_states[layer]`` (14 of SmolLM2's 30 layers), then its own branch and pooling. A reply's
prefill runs all the layers because the reply needs the logits; a pass for the emotion alone stops at the head's
layer, so it costs about ``layer / num_hidden_layers`` of a full prefill. It runs on a view of the model that shares
its weights (the embeddings and the first ``layer`` decoder layers, no final norm, no LM head), with a KV cache of its
own that each turn extends (:class:`~voiceos.dialogue.prompt_cache.PromptCache`): the persona is prefilled once, and
a turn prefills what the conversation added since the last one (the reply, then the user's new turn).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from voiceos.dialogue.hf_cache import cache_kwargs, output_cache
from voiceos.dialogue.model import DialogueModel
from voiceos.dialogue.prompt_cache import Messages, PromptCache, prefill_system_turn
from voiceos.emotion.features import user_turn_prompt
from voiceos.emotion.labels import EmotionResult


def first_layers(model: Any, n_layers: int) -> Any:  # a transformers causal LM -> its class's decoder stack
    """The decoder stack (``model.model``, e.g. a ``LlamaModel``) of a new model of ``model``'s class that holds
    ``model``'s embeddings and first ``n_layers`` decoder layers (shared, not copied) and no final norm: its
    ``last_hidden_state`` is ``model``'s ``hidden_states[n_layers]``."""
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = n_layers
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:n_layers]
    with torch.device("meta"):  # nothing allocated: every module below is replaced by the model's own
        view = type(model)(config).model
    source = model.model
    view.embed_tokens = source.embed_tokens
    view.layers = nn.ModuleList(list(source.layers)[:n_layers])
    view.norm = nn.Identity()
    view.rotary_emb = source.rotary_emb
    left = [name for name, t in [*view.named_parameters(), *view.named_buffers()] if t.device.type == "meta"]
    if left:
        raise ValueError(f"a view of the first {n_layers} layers of {type(model).__name__} misses {left[:3]}")
    return view.eval()


class EmotionPass:
    """Reads the user's emotion through the first ``dialogue_model.layer`` layers of ``dialogue_model.lm``."""

    def __init__(self, dialogue_model: DialogueModel, tokenizer: Any) -> None:
        if dialogue_model.emotion_head is None:
            raise ValueError("an emotion pass needs a dialogue model with an emotion head")
        self.dialogue_model = dialogue_model
        self.layers = dialogue_model.layer
        self.view = first_layers(dialogue_model.lm, self.layers)
        self.tokenizer = tokenizer
        self._persona: dict[str, tuple[list[int], Any]] = {}
        self.prompt_cache = PromptCache(self._persona_prefix, self._new_cache)

    def read(self, messages: Messages) -> EmotionResult:
        """The emotion of ``messages``' last (user) turn; the prompt through that turn stays cached for the next."""
        user_ids, span = user_turn_prompt(self.tokenizer, messages)
        start, cache = self.prompt_cache.start(messages, user_ids, span[0])
        user_span = (max(0, span[0] - start), max(1, span[1] - start))
        ids = torch.tensor([user_ids[start:]], device=self.view.embed_tokens.weight.device)
        with torch.inference_mode():
            out = self.view(input_ids=ids, **cache_kwargs(self.view, cache), use_cache=True)
            emotion_logits = self.dialogue_model.read_states(out.last_hidden_state, user_span)
        self.prompt_cache.keep(user_ids, output_cache(out))
        return self.dialogue_model.emotion(emotion_logits)

    def clear(self) -> None:
        """Forget the conversation (the persona's cache stays)."""
        self.prompt_cache.clear()

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.view.config)

    def _persona_prefix(self, system: str) -> tuple[list[int], Any]:
        if system not in self._persona:
            cache = self._new_cache()
            prefix = prefill_system_turn(self.view, self.tokenizer, system, cache)
            self._persona = {system: (prefix, cache)}  # one persona at a time
        return self._persona[system]
