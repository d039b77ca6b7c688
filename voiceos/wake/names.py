"""Spotting the assistant's name in a transcript ("Milo, what time is it?", "What's the time, Milo?") and taking it
out of what the LM is asked.

Whisper writes a name it does not know in several ways ("Milo", "Mylo", "Milo's", "Mila"), so a word matches a name
when it is the name, its plural or possessive, or (names of 4 letters or more) one vowel away from it. Where the
name may stand (``placement``) is the trade between false wakes (a name-like word inside talk that is not for the
assistant) and missed wakes: measured on the shared real speech (benchmarks/wake_names.py, benchmarks/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Placement = Literal["start", "start_or_end", "anywhere"]
# Words before the name that do not count as the start of the request ("hey Milo", "okay so Milo, ...").
LEAD_INS = frozenset(["hey", "hi", "hello", "ok", "okay", "oh", "so", "um", "uh", "well", "and", "yo", "excuse", "me"])
START_WORDS = 2  # the name counts as "at the start" within this many words after the lead-ins
END_WORDS = 2  # ... "at the end" within this many words before the end ("..., Milo, please")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Spotted:
    """The name was found: ``request`` is what the user said with the name (and its lead-ins) taken out."""

    name: str
    request: str


def _normalize(word: str) -> str:
    word = word.lower().strip("'")
    for suffix in ("'s", "s'"):
        if word.endswith(suffix):
            return word[: -len(suffix)]
    return word


VOWELS = frozenset("aeiouy")


def _one_vowel_apart(a: str, b: str) -> bool:
    """``a`` and ``b`` differ in one vowel (changed, added or dropped): how a name's spelling drifts in a transcript
    ("Mylo", "Mila", "Miloo"); a consonant makes another word ("mill")."""
    if len(a) == len(b):
        differ = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
        return len(differ) == 1 and differ[0][0] in VOWELS and differ[0][1] in VOWELS
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[i] in VOWELS and long[:i] + long[i + 1 :] == short for i in range(len(long)))


def word_is_name(word: str, name: str) -> bool:
    word, name = _normalize(word), name.lower()
    if word == name or word == name + "s":
        return True
    return len(name) >= 4 and _one_vowel_apart(word, name)


class NameSpotter:
    """Finds one of ``names`` (one word each: "Milo") in a transcript where ``placement`` allows."""

    def __init__(self, names: Sequence[str], placement: Placement = "start_or_end") -> None:
        words = [w for n in names for w in _WORD.findall(n.lower()) if w not in LEAD_INS]
        if not words:
            raise ValueError("wake.names needs at least one name")
        self.names = tuple(dict.fromkeys(words))
        self.placement = placement

    def spot(self, transcript: str) -> Spotted | None:
        """The name and the request without it, or None when the name is not where it may stand."""
        tokens = list(re.finditer(r"\S+", transcript))
        words = [_WORD.findall(t.group().lower()) for t in tokens]
        flat = [(i, w[0]) for i, w in enumerate(words) if w]
        if not flat:
            return None
        first = 0
        while first < len(flat) and flat[first][1] in LEAD_INS:
            first += 1
        for position, (index, word) in enumerate(flat):
            name = next((n for n in self.names if word_is_name(word, n)), None)
            if name is None or not self._allowed(position, first, len(flat)):
                continue
            kept = [t.group() for j, t in enumerate(tokens) if j != index and not (j < index and position <= first
                    and _is_lead_in(words[j]))]  # fmt: skip
            ending = re.search(r"[.!?]+$", tokens[index].group())
            if ending and kept and index == len(tokens) - 1:  # "What's the time, Milo?": the question stays one
                kept[-1] = kept[-1].rstrip(",;:") + ending.group()
            return Spotted(name, _tidy(" ".join(kept)))
        return None

    def _allowed(self, position: int, first: int, count: int) -> bool:
        if self.placement == "anywhere":
            return True
        at_start = first <= position < first + START_WORDS
        at_end = position >= count - END_WORDS
        return at_start or (self.placement == "start_or_end" and at_end)


def _is_lead_in(words: list[str]) -> bool:
    return bool(words) and words[0] in LEAD_INS


def _tidy(text: str) -> str:
    """The request as the LM should see it: no dangling commas, a capital first letter."""
    text = re.sub(r"\s+([,.!?])", r"\1", text).strip(" ,")
    text = re.sub(r",\s*([.!?])$", r"\1", text)
    text = re.sub(r"^[,.!?]+\s*", "", text)
    return text[:1].upper() + text[1:] if text else text
