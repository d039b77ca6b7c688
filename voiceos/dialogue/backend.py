"""The dialogue stage's seam: what the pipeline needs from whatever writes the replies, and the factory that picks
one by ``dialogue.backend``.

- ``embedded``: the model in this process, decoded by llama.cpp
  (:class:`~voiceos.dialogue.llama_cpp_lm.LlamaCppLM`, with the torch model beside it for the prompt and the emotion
  head) or by torch (:class:`~voiceos.dialogue.lm.DialogueLM`, whose prefill the emotion head reads), as
  ``dialogue.decoder`` and :func:`choose_decoder` say.
- ``openai``: :class:`~voiceos.dialogue.openai_chat.OpenAIChat`, replies streamed from an OpenAI-compatible server;
  the emotion head reads the embedded model's prefill of the user's turn, locally.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Protocol

from voiceos.config import DialogueOptions
from voiceos.dialogue.types import EmotionHook, GenerationStats, Messages
from voiceos.errors import ModelLoadError
from voiceos.models import DevicePlan

if TYPE_CHECKING:  # a torch module: the protocol names it, loading a backend imports it
    from voiceos.emotion.head import EmotionHead

log = logging.getLogger(__name__)


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
    ) -> Generator[str, None, None]:
        """Yield the reply's text as it comes; ``close()`` stops it at once. ``on_emotion`` gets the user's emotion
        before the first token; the note it returns joins the context after the user's turn."""
        ...

    def reset(self) -> None:
        """A new conversation: forget whatever is cached of the old one."""
        ...


def choose_decoder(options: DialogueOptions, plan: DevicePlan) -> tuple[str, str]:
    """Which decoder writes the embedded backend's replies here (``llama_cpp`` or ``torch``), and why."""
    from voiceos.dialogue.llama_cpp_lm import gguf_path, llama_cpp_version

    if options.decoder == "torch":
        return "torch", "dialogue.decoder: torch"
    version = llama_cpp_version()
    problem = (
        "the model is not a GGUF file on this machine"
        if gguf_path(options) is None
        else f"the LM runs on {plan.torch_device}"
        if plan.torch_device != "cpu"
        else "llama-cpp-python is not installed"
        if version is None
        else None
    )
    if problem is None:
        return "llama_cpp", f"llama.cpp {version} (llama-cpp-python) on the GGUF, ~3-4x torch's rate on these CPUs"
    if options.decoder == "llama_cpp":
        raise ModelLoadError(f"dialogue.decoder llama_cpp: {problem}; set dialogue.decoder: auto or torch")
    return "torch", f"transformers' forward ({problem})"


def load_dialogue(
    options: DialogueOptions, plan: DevicePlan, *, threads: int = 0, emotion: bool = True
) -> DialogueBackend:
    """The backend ``options.backend`` names; ``emotion``: the emotion head will be attached (a remote backend then
    loads the embedded model beside it for the head to read)."""
    if options.backend == "openai":
        from voiceos.dialogue.openai_chat import OpenAIChat

        return OpenAIChat.load(options, plan, threads=threads, emotion=emotion)
    decoder, why = choose_decoder(options, plan)
    log.info("dialogue decoder: %s", why)
    if decoder == "llama_cpp":
        from voiceos.dialogue.llama_cpp_lm import LlamaCppLM

        return LlamaCppLM.load(options, plan, threads=threads)
    from voiceos.dialogue.lm import DialogueLM

    return DialogueLM.load(options, plan, threads=threads)
