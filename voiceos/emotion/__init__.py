"""Emotion of the user's turn, read off the dialogue LM's prefill hidden states by a small trained head."""

from voiceos.emotion.labels import LABELS

__all__ = ["LABELS"]
