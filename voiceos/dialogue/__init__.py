"""The dialogue stage: a streaming chat LM and the chunker that turns its text into speakable sentences."""

from voiceos.dialogue.chunker import SentenceChunker
from voiceos.dialogue.lm import DialogueLM, GenerationStats, PrefillResult

__all__ = ["DialogueLM", "GenerationStats", "PrefillResult", "SentenceChunker"]
