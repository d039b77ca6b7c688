"""The emotion label set shared by both corpora (Ekman's six emotions plus neutral), in GoEmotions-Ekman's order."""

from __future__ import annotations

LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}
