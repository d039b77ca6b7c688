"""SentenceChunker: sentence splitting of streamed LM text, and cleaning it for speech."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceos.text.chunker import SentenceChunker, clean_for_speech


def chunk_whole(text: str, **kwargs) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    return chunker.push(text) + chunker.flush()


def chunk_in_pieces(text: str, cuts: list[int], **kwargs) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    out: list[str] = []
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    for lo, hi in itertools.pairwise(bounds):
        out.extend(chunker.push(text[lo:hi]))
    return out + chunker.flush()


SAMPLES = [
    "Hello there! How are you today? I'm fine, thanks.",
    "Mr. Smith met Dr. Jones, e.g. at 3.5 pm. Then they left... and came back. Wait… What?",
    "**Note:** use `pip`.\n- item one\n- item two\n# Title\nDone 😊! I like apples, pears, etc. They are nice.",
    "The U.S. Army is big. Well... I think so. It costs $3.50 now! Really?! Yes.",
    '1. First thing.\n2. Second thing. He said "why?" Then left.',
]
PIECES = st.sampled_from([*SAMPLES, "I", "Ice", "...", "…", ". ", "\n", "etc.", "e.g.", "3.5", " ", "Mr.", "😊", "*"])


@settings(max_examples=150, deadline=None)
@given(text=st.lists(PIECES, max_size=12).map("".join), cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_streamed_deltas_of_any_size_give_the_same_chunks_as_the_whole_text(text: str, cuts: list[int]) -> None:
    assert chunk_in_pieces(text, cuts) == chunk_whole(text)


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="aB I.!?…,;:\n*#`-3😊\"'", max_size=60), cuts=st.lists(st.integers(0, 100), max_size=10))
def test_chunks_never_depend_on_delta_boundaries_even_for_odd_text(text: str, cuts: list[int]) -> None:
    for kwargs in ({}, {"split_clauses": True, "clause_min_chars": 5}, {"min_chars": 8}):
        assert chunk_in_pieces(text, cuts, **kwargs) == chunk_whole(text, **kwargs)


def test_splits_after_terminal_punctuation_followed_by_space() -> None:
    assert chunk_whole("Hello there! How are you? I'm fine.") == ["Hello there!", "How are you?", "I'm fine."]


def test_a_sentence_is_returned_as_soon_as_the_space_after_it_arrives() -> None:
    chunker = SentenceChunker()
    assert chunker.push("It is sunny.") == []  # "sunny.com"? wait for the next character
    assert chunker.push(" Let") == ["It is sunny."]
    assert chunker.flush() == ["Let"]


@pytest.mark.parametrize(
    "text",
    [
        "Mr. Smith and Mrs. Jones met Dr. Who today.",
        "Fruit, e.g. apples, i.e. the red ones, is good.",
        "Prof. X lives on Elm St. near J. R. Tolkien.",
        "The U.S. Army is big.",
    ],
)
def test_common_abbreviations_and_initials_do_not_end_a_sentence(text: str) -> None:
    assert chunk_whole(text) == [text]


def test_etc_ends_a_sentence_only_before_a_capital() -> None:
    assert chunk_whole("Apples, pears, etc. are fruit. Bread etc. Then more.") == [
        "Apples, pears, etc. are fruit.",
        "Bread etc.",
        "Then more.",
    ]


def test_decimals_and_prices_are_not_split() -> None:
    assert chunk_whole("Pi is about 3.14 and it costs $2.50 today. Done.") == [
        "Pi is about 3.14 and it costs $2.50 today.",
        "Done.",
    ]


def test_an_ellipsis_in_the_middle_of_a_sentence_does_not_split_it() -> None:
    assert chunk_whole("Well... I think so... maybe. Wait… What?") == ["Well... I think so... maybe.", "Wait…", "What?"]


def test_newlines_end_chunks_and_markdown_is_stripped() -> None:
    text = "# Shopping\n**Buy** these:\n- `milk`\n* eggs\n1. bread\n---\nThat's all 😊!"
    assert chunk_whole(text) == ["Shopping", "Buy these:", "milk", "eggs", "1. bread", "That's all!"]


def test_clean_for_speech_keeps_words_and_drops_symbols_links_and_emoji() -> None:
    assert clean_for_speech("See [the docs](https://x.y/z) 👍🏽 __now__, snake_case stays.") == (
        "See the docs now, snake_case stays."
    )
    assert clean_for_speech("It is 25°C 🌞 — nice ✨") == "It is 25°C — nice"


def test_flush_returns_the_unfinished_remainder_and_empties_the_chunker() -> None:
    chunker = SentenceChunker()
    assert chunker.push("One. Two is not fini") == ["One."]
    assert chunker.flush() == ["Two is not fini"]
    assert chunker.flush() == []
    assert chunker.push("Again. ") == ["Again."]


def test_flush_on_an_empty_or_symbol_only_stream_returns_nothing() -> None:
    assert chunk_whole("") == []
    assert chunk_whole("  ***  😊 \n ") == []


def test_min_chars_joins_short_sentences_to_the_next() -> None:
    assert chunk_whole("Hi. Yo. How are you doing today? Fine.", min_chars=10) == [
        "Hi. Yo. How are you doing today?",
        "Fine.",
    ]


def test_clause_splitting_is_off_by_default_and_splits_long_clauses_when_on() -> None:
    text = "This first clause is quite long, and this one too; short, end."
    assert chunk_whole(text) == [text]
    assert chunk_whole(text, split_clauses=True, clause_min_chars=15) == [
        "This first clause is quite long,",
        "and this one too;",
        "short, end.",
    ]


def test_first_clause_splits_only_the_replys_first_chunk() -> None:
    text = "Well, that is a hard question, but I will try. First, we look at it, and then, we decide."
    assert chunk_whole(text, first_clause=True, clause_min_chars=12) == [
        "Well, that is a hard question,",
        "but I will try.",
        "First, we look at it, and then, we decide.",
    ]


def test_first_clause_starts_again_after_flush() -> None:
    chunker = SentenceChunker(first_clause=True, clause_min_chars=5)
    assert chunker.push("Sure thing, here it is. Next, more. ") == ["Sure thing,", "here it is.", "Next, more."]
    assert chunker.flush() == []
    assert chunker.push("Okay then, again. ") == ["Okay then,", "again."]
