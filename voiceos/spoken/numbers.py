"""Numbers as people say them and as Whisper writes them ("twenty five", "25", "3.5", "a hundred and ten", "two and
a half", "minus five"), and numbers as the assistant says them (words, from unicode-rbnf, the library hassil itself
uses to match spoken numbers)."""

from __future__ import annotations

import functools
import math
import re

UNITS = {
    "zero": 0,
    "oh": 0,
    "nought": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
FRACTIONS = {"half": 0.5, "quarter": 0.25, "third": 1 / 3}
NEGATIVE = {"minus", "negative"}
DIGITS = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,250
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # forty-two
    return [t for t in re.split(r"[\s,]+", text.strip(" .?!")) if t]


def parse_number(text: str) -> float | None:
    """The number ``text`` says as a whole (words, digits or both), or None when it is not just a number.

    >>> parse_number("twenty five"), parse_number("1,250"), parse_number("two and a half"), parse_number("minus 5")
    (25.0, 1250.0, 2.5, -5.0)
    """
    tokens = _tokens(text)
    if not tokens:
        return None
    sign = 1.0
    if tokens[0] in NEGATIVE:
        sign, tokens = -1.0, tokens[1:]
    elif tokens[0].startswith("-") and len(tokens[0]) > 1:
        sign, tokens[0] = -1.0, tokens[0][1:]
    value = _parse_unsigned(tokens)
    return None if value is None else sign * value


def _parse_unsigned(tokens: list[str]) -> float | None:
    if not tokens:
        return None
    # "two and a half", "an hour and a quarter" style tails: N and a half/quarter
    for i in range(len(tokens) - 2):
        if tokens[i] == "and" and tokens[i + 1] in ("a", "one") and tokens[i + 2] in FRACTIONS and i + 3 == len(tokens):
            whole = _parse_unsigned(tokens[:i])
            return None if whole is None else whole + FRACTIONS[tokens[i + 2]]
    if len(tokens) == 2 and tokens[0] in ("a", "one", "an") and tokens[1] in FRACTIONS:
        return FRACTIONS[tokens[1]]
    if len(tokens) == 1 and tokens[0] in FRACTIONS:
        return FRACTIONS[tokens[0]]
    if "point" in tokens:  # "three point five"
        at = tokens.index("point")
        whole = _parse_unsigned(tokens[:at]) if at else 0.0
        digits = [UNITS.get(t) for t in tokens[at + 1 :]]
        if whole is None or not digits or any(d is None or d > 9 for d in digits):
            return None
        return whole + float("0." + "".join(str(d) for d in digits))
    if len(tokens) == 1 and DIGITS.match(tokens[0]):
        return float(tokens[0].lstrip("+"))
    return _parse_words(tokens)


def _parse_words(tokens: list[str]) -> float | None:
    """Cardinal words (with digits mixed in: "3 hundred"): "a hundred and ten", "one thousand two hundred"."""
    total, current, seen = 0.0, 0.0, False
    for i, token in enumerate(tokens):
        if token == "and" and seen and i + 1 < len(tokens):
            continue
        if token in ("a", "an") and i + 1 < len(tokens) and tokens[i + 1] in SCALES and not seen:
            current, seen = 1.0, True
            continue
        if token in UNITS:
            current += UNITS[token]
        elif token in TENS:
            current += TENS[token]
        elif token in SCALES:
            scale = SCALES[token]
            if not seen:
                return None
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0.0
        elif DIGITS.match(token):
            current += float(token)
        else:
            return None
        seen = True
    return total + current if seen else None


@functools.lru_cache(maxsize=1)
def _rbnf():
    from unicode_rbnf import RbnfEngine

    return RbnfEngine.for_language("en")


def say_number(value: float, *, places: int = 2) -> str:
    """``value`` in words: 391 -> "three hundred ninety-one", 14.2857 -> "fourteen point two nine"."""
    if math.isnan(value) or math.isinf(value):
        return "not a number"
    rounded = round(value, places)
    if rounded == int(rounded):
        return _rbnf().format_number(int(rounded)).text
    return _rbnf().format_number(rounded).text


def say_ordinal(value: int) -> str:
    """7 -> "seventh"."""
    from unicode_rbnf import FormatPurpose

    return _rbnf().format_number(value, purpose=FormatPurpose.ORDINAL).text


def say_year(year: int) -> str:
    """2026 -> "twenty twenty-six"."""
    from unicode_rbnf import FormatPurpose

    return _rbnf().format_number(year, purpose=FormatPurpose.YEAR).text


def plural(count: float, unit: str) -> str:
    """ "one minute", "five minutes", "one and a half hours" (the number in words)."""
    if count == 1:
        return f"one {unit}"
    if count != int(count) and count % 1 == 0.5:
        whole = int(count)
        if whole == 0:
            return f"half a {unit}"
        return f"{say_number(whole)} and a half {unit}s"
    return f"{say_number(count)} {unit}s"
