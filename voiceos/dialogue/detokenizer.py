"""Streaming token ids to text without splitting a character."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas, holding back an incomplete UTF-8 character.

    Each step decodes all ids so far (replies are short: decoding 100 ids takes microseconds) and emits the new
    suffix, so the deltas add up to the decode of :attr:`ids`.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def _decode(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self._decode()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return ""  # a multi-byte character is still incomplete (or the text is being re-spaced): wait
        delta, self.emitted = text[len(self.emitted) :], text
        return delta

    def finish(self) -> str:
        """The rest; a character left incomplete by the token limit is dropped, with its tokens."""
        text = self._decode()
        while text.endswith("\ufffd") and text != self.emitted:
            self.ids.pop()
            text = self._decode()
        if not text.startswith(self.emitted):
            log.warning("detokenizer: the final text does not extend what was streamed; %d chars dropped", len(text))
            return ""
        delta, self.emitted = text[len(self.emitted) :], text
        return delta
