"""KV caches a new prompt starts from, so that a turn prefills only what is new in it.

Every prompt opens with the persona (the system turn), and in a conversation each prompt repeats the previous one
and the reply the model just wrote, which the last reply's KV cache already holds. A new prompt takes the longest
common prefix of its token ids with the last reply's (prompt + generated tokens), the cache cut to that length, or
else a copy of the persona's cache. Whatever breaks the common prefix (history trimmed to fit, an emotion note after
the last user turn, an interrupted reply remembered shorter, a reply that tokenizes differently once decoded, a new
system prompt) only shortens the reused part: the prefill then covers more tokens and gives the same result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from voiceos.dialogue.hf_cache import cache_kwargs
from voiceos.dialogue.types import Messages


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PromptCache:
    """``persona(system_prompt)`` gives the persona's token ids and KV cache (kept by the LM, never modified here)."""

    def __init__(self, persona: Callable[[str], tuple[list[int], Any]], new_cache: Callable[[], Any]) -> None:
        self._persona = persona
        self._new_cache = new_cache
        self._last: tuple[list[int], Any] | None = None  # the last reply's token ids and the cache holding them

    def start(self, messages: Messages, ids: list[int], limit: int) -> tuple[int, Any]:
        """How many leading ``ids`` (at most ``limit``) the returned cache holds; the cache is the caller's to
        extend. The last reply's cache is handed out once: the prefill extends it in place."""
        persona_len, persona_cache = 0, None
        if messages and messages[0]["role"] == "system":
            prefix, persona_cache = self._persona(messages[0]["content"])
            if len(prefix) <= limit and ids[: len(prefix)] == prefix:
                persona_len = len(prefix)
        last, self._last = self._last, None
        if last is not None:
            reused = min(common_prefix(last[0], ids), limit)
            cache = last[1]
            if reused > persona_len:
                cache.crop(reused - cache.get_seq_length())  # negative: that many tokens off the end
                if cache.get_seq_length() == reused:
                    return reused, cache
        if persona_len:
            return persona_len, copy.deepcopy(persona_cache)
        return 0, self._new_cache()

    def keep(self, ids: list[int], cache: Any) -> None:
        """The cache a reply ended with, holding exactly ``ids`` (its prompt and the tokens fed after it)."""
        self._last = (list(ids), cache) if cache.get_seq_length() == len(ids) else None

    def clear(self) -> None:
        self._last = None


def prefill_system_turn(model: Any, tokenizer: Any, system: str, cache: Any) -> list[int]:
    """Run the system turn alone (through the chat template) into the empty ``cache``; its token ids."""
    text = tokenizer.apply_chat_template([{"role": "system", "content": system}], tokenize=False)
    prefix = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    device = next(model.parameters()).device
    with torch.inference_mode():
        model(input_ids=torch.tensor([prefix], device=device), **cache_kwargs(model, cache))
    return prefix
