"""What the condolence and celebration guards share: a sentence of a kind (a pattern) said although the emotion head
is at least ``threshold`` sure the user feels one of ``read_as``."""

from __future__ import annotations

import re
from collections.abc import Sequence

from voiceos.emotion.labels import EmotionResult


def misplaced(
    sentence: str, reading: EmotionResult | None, threshold: float, kind: re.Pattern[str], read_as: Sequence[str]
) -> bool:
    """True when ``sentence`` is of ``kind`` and the head is at least ``threshold`` sure of one of ``read_as``
    (``threshold`` 0 or no reading: never)."""
    if threshold <= 0 or reading is None:
        return False
    return max(reading.scores.get(label, 0.0) for label in read_as) >= threshold and kind.search(sentence) is not None
