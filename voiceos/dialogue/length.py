"""How long a spoken reply may be: people answer a passing remark in a sentence or two, not a paragraph.

``dialogue.max_sentences`` stops the LM after that many sentences, unless the user asked for length ("tell me a
story", "explain ... in detail"), when only ``max_new_tokens`` bounds the reply.
"""

from __future__ import annotations

import re

DETAIL = re.compile(
    r"\b(?:tell me (?:a |another )?(?:long |short )?(?:story|tale|joke|more)|story about|in detail|explain|describe"
    r"|step by step|all about|at length|list (?:all|every|some)|go on|keep going|continue)\b",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"[.!?…][\"')\]]*\s*$")


def wants_detail(user_text: str) -> bool:
    """Whether the user asked for a long answer."""
    return DETAIL.search(user_text) is not None


def ends_sentence(chunk: str) -> bool:
    """Whether a chunk from the sentence chunker ends a sentence (a first clause, ending in a comma, does not)."""
    return SENTENCE_END.search(chunk) is not None
