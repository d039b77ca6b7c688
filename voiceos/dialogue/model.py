"""The dialogue model: the causal LM plus an emotion head over its hidden states of the user's turn.

One forward pass yields both outputs. A reply's prefill runs in two steps over one KV cache:

1. the prompt up to the end of the user's turn -> the hidden states the emotion head reads (at the head's layer;
   its LoRA branch, if any, runs over them: :mod:`voiceos.emotion.branch`) and the cache;
2. what follows (an optional note saying how the user seems to feel, then the assistant's turn opener) -> the logits of
   the reply's first token.

No token is run twice, and no second model reads the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from voiceos.dialogue.hf_cache import cache_kwargs, output_cache
from voiceos.emotion.features import resolve_layer
from voiceos.emotion.head import EmotionHead
from voiceos.emotion.labels import EmotionResult


@dataclass(frozen=True)
class DialogueOutput:
    logits: torch.Tensor  # (1, vocab) float32: the next token after the input
    cache: Any  # the KV cache, now holding the input too
    emotion_logits: torch.Tensor | None = None  # (n_labels,) when a user span was given and a head is attached


class DialogueModel(nn.Module):
    def __init__(self, lm: nn.Module, head: EmotionHead | None = None, labels: Sequence[str] = ()) -> None:
        super().__init__()
        self.lm: Any = lm  # a transformers causal LM: its .config and .model are its class's, unknown to nn.Module
        self.emotion_head = head.eval().bind(lm) if head is not None else None
        self.labels = tuple(labels)
        self.layer = resolve_layer(lm, head.layer) if head is not None else -1

    @property
    def hidden_size(self) -> int:
        return int(self.lm.config.hidden_size)

    def fits(self, head: EmotionHead, labels: Sequence[str]) -> bool:
        """Whether ``head`` reads features of this LM's width and names one label per output."""
        return head.n_labels == len(labels) and head.in_dim in (self.hidden_size, 2 * self.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, cache: Any = None, user_span: tuple[int, int] | None = None
    ) -> DialogueOutput:
        """``input_ids`` (1, seq) after whatever ``cache`` holds; ``user_span`` indexes ``input_ids``."""
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.lm.config)
        wants_emotion = user_span is not None and self.emotion_head is not None
        with torch.inference_mode():
            out = self.lm(
                input_ids=input_ids,
                **cache_kwargs(self.lm, cache),
                use_cache=True,
                output_hidden_states=wants_emotion,
                logits_to_keep=1,
            )
            emotion_logits = None
            if wants_emotion:
                assert user_span is not None
                emotion_logits = self.read_states(out.hidden_states[self.layer], user_span)
        return DialogueOutput(out.logits[:, -1, :].float(), output_cache(out), emotion_logits)

    def read_states(self, hidden: torch.Tensor, user_span: tuple[int, int]) -> torch.Tensor:
        """The head's (n_labels,) logits from its layer's (1, seq, dim) states; ``user_span`` indexes ``seq``."""
        head = self.emotion_head
        assert head is not None
        features = head.pool(hidden, torch.tensor([hidden.shape[1]]), torch.tensor([user_span]))
        return head(features.to(head.out.weight.device))[0]

    def emotion(self, emotion_logits: torch.Tensor) -> EmotionResult:
        probs = emotion_logits.float().softmax(dim=-1).cpu()
        return EmotionResult(
            self.labels[int(probs.argmax())], {name: float(p) for name, p in zip(self.labels, probs, strict=True)}
        )
