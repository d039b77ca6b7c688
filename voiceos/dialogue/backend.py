"""The dialogue stage's seam: what the pipeline needs from whatever writes the replies, and the factory that picks
one by ``dialogue.backend``.

- ``embedded``: :class:`~voiceos.dialogue.lm.DialogueLM`, the model in this process (its GGUF block kernel and lean
  decode step are its own modules, ``blocks.py`` and ``decode_step.py``); the emotion head reads its prefill.
- ``openai``: :class:`~voiceos.dialogue.openai_chat.OpenAIChat`, replies streamed from an OpenAI-compatible server;
  the emotion head reads the embedded model's prefill of the user's turn, locally.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from voiceos.config import DialogueOptions
from voiceos.dialogue.lm import DialogueLM, EmotionHook, GenerationStats, Messages
from voiceos.emotion.head import EmotionHead
from voiceos.models import DevicePlan


class DialogueBackend(Protocol):
    """Streams one reply at a time; the pipeline owns the history and the persona and passes them in."""

    options: DialogueOptions  # decoding settings in effect (a config reload replaces them)
    last_stats: GenerationStats  # the latest reply's, filled in as it streams

    @property
    def name(self) -> str: ...

    @property
    def has_emotion_head(self) -> bool: ...

    def attach_emotion_head(self, head: EmotionHead, labels: Sequence[str]) -> None: ...

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
    ) -> Iterator[str]:
        """Yield the reply's text as it comes; ``close()`` stops it at once. ``on_emotion`` gets the user's emotion
        before the first token; the note it returns joins the context after the user's turn."""
        ...

    def reset(self) -> None:
        """A new conversation: forget whatever is cached of the old one."""
        ...


def load_dialogue(
    options: DialogueOptions, plan: DevicePlan, *, threads: int = 0, emotion: bool = True
) -> DialogueBackend:
    """The backend ``options.backend`` names; ``emotion``: the emotion head will be attached (a remote backend then
    loads the embedded model beside it for the head to read)."""
    if options.backend == "openai":
        from voiceos.dialogue.openai_chat import OpenAIChat

        return OpenAIChat.load(options, plan, threads=threads, emotion=emotion)
    return DialogueLM.load(options, plan, threads=threads)
