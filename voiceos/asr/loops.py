"""Does a decode loop? Both engines, being autoregressive, sometimes repeat a token or a phrase until their length
limit ("5 5 5 5 5 5 5 5 5" for one spoken "five"; "Go forward 10 meters." forty times). The signs, as Whisper's own
fallback and the common decoders' repetition checks use them: a text that compresses too well, one unit of words
repeated over and over at a stretch, or more words than the audio could hold.
"""

from __future__ import annotations

import re
import zlib

COMPRESSION_RATIO_MAX = 2.4  # Whisper's compression_ratio_threshold (gzip of the text)
MAX_REPEATS = 4  # one to four words said this many times in a row: "no no no no" is speech, five is a loop
MAX_NGRAM = 4
WORDS_PER_S_MAX = 6.0  # fast speech runs ~4-5 words a second
WORDS_SLACK = 2  # ...plus this many, for very short clips


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def longest_repeat(words: list[str]) -> int:
    """How many times in a row the most repeated unit of 1-4 words occurs (1: nothing repeats)."""
    best = 1
    for n in range(1, MAX_NGRAM + 1):
        for start in range(len(words) - 2 * n + 1):
            unit, count = words[start : start + n], 1
            while words[start + count * n : start + (count + 1) * n] == unit:
                count += 1
            best = max(best, count)
    return best


def loop_reason(text: str, duration_s: float) -> str | None:
    """Why ``text`` (transcribed from ``duration_s`` of audio) looks like a looping decode, or None."""
    words = _words(text)
    if not words:
        return None
    if (ratio := compression_ratio(text)) > COMPRESSION_RATIO_MAX:
        return f"compression ratio {ratio:.1f}"
    if (repeats := longest_repeat(words)) > MAX_REPEATS:
        return f"a phrase {repeats} times in a row"
    if len(words) > duration_s * WORDS_PER_S_MAX + WORDS_SLACK:
        return f"{len(words)} words in {duration_s:.1f} s"
    return None


def cut_repeats(text: str) -> str:
    """``text`` with any run of a repeated unit of words after its first two occurrences removed (the fallback
    when every decode loops: the words before and after the loop are kept)."""
    tokens = text.split()
    words = [_words(t) for t in tokens]
    keep: list[str] = []
    i = 0
    while i < len(tokens):
        cut = 0
        for n in range(1, MAX_NGRAM + 1):
            unit = words[i : i + n]
            if len(unit) < n or not all(unit):
                break
            count = 1
            while words[i + count * n : i + (count + 1) * n] == unit:
                count += 1
            if count > 2:
                cut = max(cut, n * count)
                keep.extend(tokens[i : i + 2 * n])
                break
        if cut:
            i += cut
        else:
            keep.append(tokens[i])
            i += 1
    return " ".join(keep)
