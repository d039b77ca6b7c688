"""Condolences where the user showed no sorrow: "Oh no! I'm sorry to hear that." to "The kettle is on." The
fine-tuned model still sometimes treats a plain remark as bad news; the emotion head, which reads the user's turn
before the reply starts, is often sure that it is not. This guard, like the name guard, keeps such a sentence from
being said: when the head reads the turn as neutral, or as joy, with at least ``emotion.condolence_guard``
probability, a sentence that offers condolence is dropped (``benchmarks/guard_thresholds.py`` shows how rarely bad
news is read that sure, and benchmarks/README.md how often the guard fires).
"""

from __future__ import annotations

import re

from voiceos.emotion.labels import EmotionResult
from voiceos.reply.feelings import misplaced

_CONDOLENCE = re.compile(
    r"\b(?:oh no|sorry (?:to hear|for your|about (?:that|this|your))|so sorry|really sorry|condolences?|your loss|"
    r"sad to hear|that'?s (?:so |really |too )?(?:terrible|awful|horrible|sad|too bad|a shame|unfortunate)|"
    r"that is (?:so |really )?(?:terrible|awful|horrible|sad|unfortunate)|hang in there)\b",
    re.IGNORECASE,
)

# what the head reads when there is nothing to be sorry for
NOT_BAD_NEWS = ("neutral", "joy")


def offers_condolence(sentence: str) -> bool:
    return _CONDOLENCE.search(sentence) is not None


def misplaced_condolence(sentence: str, reading: EmotionResult | None, threshold: float) -> bool:
    """``sentence`` offers condolence although the head is at least ``threshold`` sure the user is neutral or happy
    (``threshold`` 0: never)."""
    return misplaced(sentence, reading, threshold, _CONDOLENCE, NOT_BAD_NEWS)
