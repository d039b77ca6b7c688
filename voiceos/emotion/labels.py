"""The emotion label set shared by both corpora (Ekman's six emotions plus neutral), in GoEmotions-Ekman's order."""

from __future__ import annotations

from dataclasses import dataclass

LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}


@dataclass(frozen=True)
class EmotionResult:
    label: str
    scores: dict[str, float]  # softmax probability per label

    @property
    def confidence(self) -> float:
        return self.scores[self.label]

    def as_json(self) -> dict:
        return {"label": self.label, "scores": {k: round(v, 4) for k, v in self.scores.items()}}
