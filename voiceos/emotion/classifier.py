"""The emotion of texts on their own (batched), with the same features the dialogue model reads in its prefill.

    head, labels = load_head(None)                     # the shipped checkpoint
    lm.attach_emotion_head(head, labels)               # every reply's prefill now yields the user's emotion
    EmotionClassifier(head, labels, lm).classify(["I lost my keys again."])   # -> [EmotionResult(...)]

``voiceos emotion`` and the tests use :meth:`EmotionClassifier.classify`; a reply reads the emotion off its own prefill
(:class:`voiceos.dialogue.model.DialogueModel`) and never calls this.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from voiceos.emotion.features import FeatureExtractor, TokenStates
from voiceos.emotion.head import EmotionHead
from voiceos.emotion.labels import EmotionResult
from voiceos.errors import ModelLoadError

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoint"


def load_head(checkpoint_dir: str | Path | None) -> tuple[EmotionHead, tuple[str, ...]]:
    """The head and its label list from a checkpoint directory (None: the shipped one)."""
    directory = Path(checkpoint_dir).expanduser() if checkpoint_dir else DEFAULT_CHECKPOINT
    from safetensors import SafetensorError

    try:
        labels = tuple(json.loads((directory / "labels.json").read_text(encoding="utf-8")))
        head = EmotionHead.load(directory)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
        raise ModelLoadError(f"emotion checkpoint {directory} cannot be loaded ({type(err).__name__}: {err})") from None
    if head.n_labels != len(labels):
        raise ModelLoadError(f"emotion checkpoint {directory}: {head.n_labels} outputs but {len(labels)} labels")
    return head, labels


class EmotionClassifier:
    def __init__(self, head: EmotionHead, labels: Sequence[str], lm: Any) -> None:
        self.labels = tuple(labels)
        self.lm = lm
        self.hidden = int(lm.model.config.hidden_size)
        if head.in_dim not in (self.hidden, 2 * self.hidden):
            raise ModelLoadError(f"the emotion head ({head.in_dim} features) does not fit the dialogue model {lm.name}")
        try:
            self.head = head.eval().bind(lm.model)
        except ValueError as err:
            raise ModelLoadError(f"the emotion head does not fit the dialogue model {lm.name}: {err}") from None
        self._extractor = FeatureExtractor(lm, head.layer)

    @classmethod
    def load(cls, checkpoint_dir: str | Path | None, lm: Any) -> EmotionClassifier:
        return cls(*load_head(checkpoint_dir), lm)

    def _results(self, probs: torch.Tensor) -> list[EmotionResult]:
        return [
            EmotionResult(
                self.labels[int(p.argmax())], {name: float(v) for name, v in zip(self.labels, p, strict=True)}
            )
            for p in probs.cpu()
        ]

    def classify(
        self, texts: Sequence[str], contexts: Sequence[Sequence[str]] | None = None, *, batch_size: int = 32
    ) -> list[EmotionResult]:
        """Emotions of ``texts``, each with its preceding utterances (oldest first) as earlier chat turns."""
        contexts = contexts if contexts is not None else [()] * len(texts)
        if len(contexts) != len(texts):
            raise ValueError("texts and contexts differ in length")
        states = self._extractor.token_states(list(zip(texts, contexts, strict=True)), batch_size=batch_size)
        return self._results(head_probabilities(self.head, states, batch_size=batch_size))


def head_probabilities(head: EmotionHead, states: TokenStates, *, batch_size: int = 64) -> torch.Tensor:
    """(n, labels) probabilities of a bound head over cached token states, in batches of similar length."""
    order = torch.argsort(states.lengths()).tolist()
    probs = torch.zeros(len(states), head.n_labels)
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x, lengths, spans = states.batch(idx)
            features = head.pool(x, lengths, spans)
            probs[idx] = head(features.to(head.out.weight.device)).float().softmax(dim=-1).cpu()
    return probs
