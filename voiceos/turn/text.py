"""Does a transcript stop mid-phrase? A check on the turn model's "complete": the model hears how a sentence
sounds, and on read speech it calls many word boundaries inside a sentence complete with confidence (0.97-0.99,
benchmarks/README.md "End of turn"); words such as "the", "of" or "might be" at the very end say the user is not
done. On the CPU the reply waits for the transcript anyway, so checking it costs no time there."""

from __future__ import annotations

import re

# Words a finished English sentence practically never ends on: articles, prepositions, conjunctions, auxiliaries,
# possessives, titles. ("Who are you talking to?" is the rare exception; it ends the turn after max_silence_ms.)
DANGLING_WORDS = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "a an the of to in on at for with from by about into onto than as and or but so because if that which who "
        "whose whom when while unless although though be been being is are was were am have has had will would can "
        "could should shall may might must do does did my your his her its our their mr mrs ms dr very more most not"
    ).split()
)
TRAILING_OFF = ("...", "…", "-", "—", ",")  # Whisper writes a voice that trails off or breaks off so


def sounds_unfinished(text: str) -> bool:
    """True when ``text`` (a transcript so far) ends on a dangling word or trails off."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(TRAILING_OFF):
        return True
    words = re.findall(r"[a-z']+", stripped.lower())
    return bool(words) and words[-1] in DANGLING_WORDS
