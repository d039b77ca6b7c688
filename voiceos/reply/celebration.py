"""Celebration where the user told no good news: "That is awesome!" to "We need more eggs for the weekend." The
shipped adapter greets many plain remarks as if they were news; the emotion head, which reads the user's turn before
the reply starts, is often sure that they are not. Like the condolence guard (voiceos.reply.condolence), this keeps
such a sentence from being said: when the head reads the turn as neutral, or as sad, afraid, angry or disgusted,
with at least ``emotion.celebration_guard`` probability, a sentence that celebrates is dropped. How rarely good
news is read that sure: ``benchmarks/guard_thresholds.py``; how often it fires: benchmarks/README.md.
"""

from __future__ import annotations

import re

from voiceos.emotion.labels import EmotionResult
from voiceos.reply.feelings import misplaced

_CELEBRATION = re.compile(
    r"\b(?:congratulations?|congrats|great news|wonderful news|awesome|so happy for you|how exciting|yay|hooray|"
    r"well done|good for you|(?:i'?m|i am) (?:so |really )?glad to hear|"
    r"that'?s (?:so |really )?(?:great|amazing|wonderful|fantastic|exciting)|"
    r"that (?:is|was) (?:so |really )?(?:great|amazing|wonderful|fantastic|exciting))\b",
    re.IGNORECASE,
)
# what the head reads when there is nothing to celebrate
NOT_GOOD_NEWS = ("neutral", "sadness", "fear", "anger", "disgust")


def celebrates(sentence: str) -> bool:
    return _CELEBRATION.search(sentence) is not None


def misplaced_celebration(sentence: str, reading: EmotionResult | None, threshold: float) -> bool:
    """``sentence`` celebrates although the head is at least ``threshold`` sure the user is neutral or upset
    (``threshold`` 0: never)."""
    return misplaced(sentence, reading, threshold, _CELEBRATION, NOT_GOOD_NEWS)
