"""Transcript normalisation and WER, the yardstick of the round-trip tests."""

from __future__ import annotations

import pytest

from voiceos.textnorm import normalize_words, number_to_words, word_error_rate


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (10, "ten"),
        (21, "twenty one"),
        (100, "one hundred"),
        (2024, "two thousand twenty four"),
    ],
)
def test_numbers_are_spelled_out(n, words):
    assert number_to_words(n) == words


def test_digits_punctuation_and_case_do_not_count_as_errors():
    assert word_error_rate("go forward ten meters", "Go forward 10 meters.") == 0.0
    assert word_error_rate("and mister john dashwood", "And Mr. John Dashwood,") == 0.0
    assert normalize_words("Cold-hearted, 1,000!") == ["cold", "hearted", "one", "thousand"]


def test_word_error_rate_counts_substitutions_insertions_and_deletions():
    assert word_error_rate("a b c d", "a x c d") == pytest.approx(0.25)
    assert word_error_rate("a b c d", "a b c d e") == pytest.approx(0.25)
    assert word_error_rate("a b c d", "a c d") == pytest.approx(0.25)
    assert word_error_rate("a b", "") == 1.0
    assert word_error_rate("", "") == 0.0
