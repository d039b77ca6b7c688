"""Replies streamed from an OpenAI-compatible chat server (``dialogue.backend: openai``): llama.cpp's server, vLLM,
Ollama, LM Studio, ``transformers serve``.

The persona, what the user told about themselves, the history and the turn go as chat messages, exactly the messages
the embedded model would be prompted with; the emotion note, when the policy adds one, follows the user's turn as a
system message, as it does locally. The server has no hidden states to give the emotion head, so the embedded model
prefills the user's turn here (one pass of the 135M model, reported as ``timings_ms.emotion``) and the head reads it.

Decoding settings that the chat-completions API has (temperature, top_p, seed, max_tokens) are sent; the others
(repetition penalty, top_k) are the server's own, since an API-strict server refuses fields it does not know.
Closing the reply's generator closes the HTTP stream, and the server stops generating (a barge-in).
A server that is down, slow past ``dialogue.timeout_s`` or answers garbage raises :class:`DialogueServerError`;
the pipeline turns that into a short spoken apology.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import urlsplit

from voiceos.config import DialogueOptions
from voiceos.dialogue.lm import DialogueLM
from voiceos.dialogue.types import ChatPrompt, EmotionHook, GenerationStats, Messages
from voiceos.emotion.head import EmotionHead
from voiceos.errors import ConfigError, DialogueServerError
from voiceos.models import EMBEDDED_LM, DevicePlan

log = logging.getLogger(__name__)


class OpenAIChat(ChatPrompt):
    """A dialogue backend over an OpenAI-compatible server, with the embedded model beside it for the emotion."""

    def __init__(self, options: DialogueOptions, client: Any, local: DialogueLM | None) -> None:
        self.options = options
        self.client = client
        self.local = local  # the embedded model whose prefill the emotion head reads (None: no emotion)
        self.last_stats = GenerationStats()
        self._model = options.server_model

    @classmethod
    def load(cls, options: DialogueOptions, plan: DevicePlan, *, threads: int = 0, emotion: bool = True) -> OpenAIChat:
        """The client (nothing is sent yet: a server that is down at start-up is an apology at the first turn, not a
        daemon that will not start) and, for the emotion head, the embedded model."""
        from openai import OpenAI

        key = None
        if options.api_key_env:
            key = os.environ.get(options.api_key_env)
            if not key:
                raise ConfigError(f"dialogue.api_key_env: the environment variable {options.api_key_env} is not set")
        # max_retries 0: a retry after a timeout doubles the wait the user hears; the next turn tries again anyway
        client = OpenAI(base_url=options.base_url, api_key=key or "none", timeout=options.timeout_s, max_retries=0)
        local = None
        if emotion:
            embedded = dataclasses.replace(options, backend="embedded", model=EMBEDDED_LM, gguf_file=None)
            local = DialogueLM.load(embedded, plan, threads=threads)
        log.info("dialogue server %s (model %s)", options.base_url, options.server_model or "the server's first")
        return cls(options, client, local)

    @property
    def name(self) -> str:
        host = urlsplit(self.options.base_url or "").netloc
        return f"openai:{self._model or '?'}@{host}"

    @property
    def has_emotion_head(self) -> bool:
        return self.local is not None and self.local.has_emotion_head

    def attach_emotion_head(self, head: EmotionHead, labels: Sequence[str]) -> None:
        if self.local is not None:
            self.local.attach_emotion_head(head, tuple(labels))

    def reset(self) -> None:
        if self.local is not None:
            self.local.reset()

    def model(self) -> str:
        """The model to ask for: ``dialogue.server_model``, else the first the server lists (asked once)."""
        if self._model is None:
            try:
                listed = [m.id for m in self.client.models.list()]
            except Exception as err:  # openai's errors, or a body that is not a model list
                raise DialogueServerError(f"{self.options.base_url}: cannot list its models ({_why(err)})") from None
            if not listed:
                raise DialogueServerError(f"{self.options.base_url}: the server lists no model")
            self._model = listed[0]
            log.info("dialogue server %s: using its model %s", self.options.base_url, self._model)
        return self._model

    def stream_reply(
        self,
        history: Messages,
        user_text: str,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
        extra_system: str | None = None,
        on_emotion: EmotionHook | None = None,
        use_adapter: bool = True,  # (the embedded adapter's switch: nothing to switch on a server)
    ) -> Generator[str, None, None]:
        start = time.perf_counter()
        stats = self.last_stats = GenerationStats()
        messages = self.messages_for(history, user_text, system_prompt=system_prompt, extra_system=extra_system)
        if on_emotion is not None and self.local is not None and self.local.has_emotion_head:
            emotion = self.local.read_emotion(history, user_text, system_prompt=system_prompt)
            note = on_emotion(emotion) if emotion is not None else None
            if note:
                messages.append({"role": "system", "content": note})
        stats.prefill_s = time.perf_counter() - start
        options = self.options
        stop_reason = "error"
        stream = None
        try:
            sampling = {"top_p": options.top_p} if options.temperature > 0 else {}
            if options.seed is not None:  # (a null field is refused by strict servers: leave it out)
                sampling["seed"] = options.seed
            stream = self.client.chat.completions.create(
                model=self.model(),
                messages=messages,
                stream=True,
                max_tokens=max_new_tokens or options.max_new_tokens,
                temperature=options.temperature,
                **sampling,
            )
            stop_reason = "eos"
            for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                delta = choice.delta.content if choice is not None and choice.delta is not None else None
                if delta:
                    if not stats.tokens:
                        stats.ttft_s = time.perf_counter() - start
                    stats.tokens += 1  # (a streamed chunk: one token on llama.cpp and vLLM)
                    yield delta
                if choice is not None and choice.finish_reason == "length":
                    stop_reason = "max_tokens"
        except GeneratorExit:
            stop_reason = "cancelled"
            raise
        except DialogueServerError:
            raise
        except Exception as err:  # connection refused or reset, a timeout, an HTTP error, a body that is not JSON
            raise DialogueServerError(f"{options.base_url}: {_why(err)}") from None
        finally:
            if stream is not None:
                stream.close()  # the server sees the connection go and stops generating
            stats.steps = stats.tokens
            stats.stop_reason = stop_reason
            stats.total_s = time.perf_counter() - start


def _why(err: Exception) -> str:
    """One line for the log: the kind of failure and its first line."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
