"""Emotion of the user's turn from the dialogue LM's own prefill (no second model, no second pass over the prompt).

    clf = EmotionClassifier.load(None, lm)            # the shipped checkpoint
    ids, span = clf.prompt(messages)                  # == lm.build_prompt(messages), plus the user's token span
    result = lm.prefill(torch.tensor([ids]))          # the pass that starts the reply
    emotion = clf.classify_from_prefill(result, span) # EmotionResult(label="joy", scores={...})

:meth:`EmotionClassifier.classify` runs the same features for texts on their own (batched), for tests and tools.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voiceos.emotion.features import FeatureExtractor, pool, prompt_and_span, prompt_and_span_for_messages
from voiceos.emotion.head import EmotionHead, select

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"


@dataclass(frozen=True)
class EmotionResult:
    label: str
    scores: dict[str, float]  # softmax probability per label

    @property
    def confidence(self) -> float:
        return self.scores[self.label]


class EmotionClassifier:
    def __init__(self, head: EmotionHead, labels: Sequence[str], lm: Any) -> None:
        self.head = head.eval()
        self.labels = tuple(labels)
        self.lm = lm
        self.hidden = int(lm.model.config.hidden_size)
        self._extractor = FeatureExtractor(lm)

    @classmethod
    def load(cls, checkpoint_dir: str | Path | None, lm: Any) -> EmotionClassifier:
        directory = Path(checkpoint_dir) if checkpoint_dir else DEFAULT_CHECKPOINT
        labels = json.loads((directory / "labels.json").read_text(encoding="utf-8"))
        head = EmotionHead.load(directory)
        if head.n_labels != len(labels) or head.in_dim not in (lm.model.config.hidden_size * k for k in (1, 2)):
            raise ValueError(f"emotion checkpoint {directory} does not fit the dialogue model {lm.name}")
        return cls(head, labels, lm)

    def prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], tuple[int, int]]:
        """The dialogue prompt's ids for ``messages`` and the token span of the last (user) message."""
        return prompt_and_span_for_messages(self.lm, messages)

    def _results(self, features: torch.Tensor) -> list[EmotionResult]:
        with torch.no_grad():
            probs = self.head(select(features.float(), self.head.pooling, self.hidden)).softmax(dim=-1)
        return [
            EmotionResult(
                self.labels[int(p.argmax())], {name: float(v) for name, v in zip(self.labels, p, strict=True)}
            )
            for p in probs.cpu()
        ]

    def classify_from_prefill(self, prefill_result: Any, user_span: tuple[int, int]) -> EmotionResult:
        """The emotion from a :class:`PrefillResult` of one prompt whose user text spans ``user_span`` tokens."""
        hidden = prefill_result.hidden_states[0]
        return self._results(pool(hidden, user_span, hidden.shape[0]).unsqueeze(0).cpu())[0]

    def classify(
        self, texts: Sequence[str], contexts: Sequence[Sequence[str]] | None = None, *, batch_size: int = 32
    ) -> list[EmotionResult]:
        """Emotions of ``texts``, each with its preceding utterances (oldest first) as earlier chat turns."""
        contexts = contexts if contexts is not None else [()] * len(texts)
        if len(contexts) != len(texts):
            raise ValueError("texts and contexts differ in length")
        feats = self._extractor.features(list(zip(texts, contexts, strict=True)), batch_size=batch_size)
        return self._results(torch.from_numpy(feats))

    def span_for(self, text: str, context: Sequence[str] = ()) -> tuple[list[int], tuple[int, int]]:
        return prompt_and_span(self.lm, text, context)
