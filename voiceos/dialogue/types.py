"""The dialogue stage's shared types, free of torch and of any backend: the chat messages, the emotion hook, the
statistics of a reply, and how one turn's chat is put together. The protocol (:mod:`voiceos.dialogue.backend`) and
every backend use them; none has to import another backend for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from voiceos.config import DialogueOptions
from voiceos.emotion.labels import EmotionResult

Messages = list[dict[str, str]]  # [{"role": "system" | "user" | "assistant", "content": "..."}]
EmotionHook = Callable[[EmotionResult], "str | None"]  # the user's emotion -> a note for the context, or None


@dataclass
class GenerationStats:
    """The latest reply, filled in while it streams (wall clock, so time the consumer spends between deltas counts)."""

    prompt_tokens: int = 0
    reused_tokens: int = 0  # leading prompt tokens taken from a KV cache (persona, or the conversation so far)
    tokens: int = 0  # reply tokens; a stop token is not counted
    steps: int = 0  # tokens picked, including a stop token
    prefill_s: float = 0.0
    ttft_s: float = 0.0  # from the first next() to the first picked token
    total_s: float = 0.0
    stop_reason: str = ""  # eos, max_tokens, cancelled or error; empty while streaming
    token_ids: tuple[int, ...] = field(default=(), repr=False)  # the reply's tokens: kept out of logs (privacy)

    @property
    def tokens_per_s(self) -> float:
        """Decoding rate after the first token (TTFT covers the prefill)."""
        decode_s = self.total_s - self.ttft_s
        return (self.steps - 1) / decode_s if self.steps > 1 and decode_s > 0 else 0.0


def chat_messages(system: str, extra_system: str | None, history: Messages, user_text: str) -> Messages:
    """The chat for one turn, for any backend: the system prompt (plus ``extra_system``), the history, the user."""
    system = "\n".join(part.strip() for part in (system, extra_system or "") if part and part.strip())
    messages = [{"role": "system", "content": system}] if system else []
    for message in history:
        if message.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"history message has an unknown role: {message.get('role')!r}")
        messages.append({"role": message["role"], "content": str(message.get("content", ""))})
    return [*messages, {"role": "user", "content": user_text}]


class ChatPrompt:
    """What every backend does alike: the chat for one turn from its ``options``' system prompt."""

    options: DialogueOptions

    def messages_for(
        self, history: Messages, user_text: str, *, system_prompt: str | None = None, extra_system: str | None = None
    ) -> Messages:
        """The chat for one turn: the system prompt (plus ``extra_system``), the history, then the user's text."""
        system = self.options.system_prompt if system_prompt is None else system_prompt
        return chat_messages(system, extra_system, history, user_text)
