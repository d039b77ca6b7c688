"""Does a transcript stop mid-phrase? A check on the turn model's "complete": the model hears how a sentence
sounds, and on read speech it calls many word boundaries inside a sentence complete with confidence (0.97-0.99,
benchmarks/README.md "End of turn"); words such as "the", "of" or "might be" at the very end say the user is not
done. On the CPU the reply waits for the transcript anyway, so checking it costs no time there."""

from __future__ import annotations

import re

# Words an English sentence practically never ends on: articles, the possessives that need a noun, conjunctions,
# "of", "than", titles, "be"/"been". Words a spoken sentence does end on are left out on purpose: auxiliaries ("than he
# was", "I think you should"), most prepositions ("Where are you from?", "I want to."), "that", "so", "though".
DANGLING_WORDS = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "a an the my your our their its whose of than as and or but because although unless if mr mrs ms dr very "
        "be been being into onto"
    ).split()
)
# Whisper writes a voice that trails off or breaks off so. Not a comma: Moonshine ends finished sentences with one
# as often as not (6 of 12 LibriVox and card-list recordings: benchmarks/README.md, "Moonshine beside Whisper").
TRAILING_OFF = ("...", "…", "-", "—")


SENTENCE_ENDS = (".", "?", "!")


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends with a sentence's punctuation and not on a dangling word ("... of the.")."""
    stripped = text.strip().rstrip("\"')\u201d")
    return stripped.endswith(SENTENCE_ENDS) and not stripped.endswith("...") and not sounds_unfinished(stripped)


def sounds_unfinished(text: str) -> bool:
    """True when ``text`` (a transcript so far) ends on a dangling word or trails off."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(TRAILING_OFF):
        return True
    words = re.findall(r"[a-z']+", stripped.lower())
    return bool(words) and words[-1] in DANGLING_WORDS
