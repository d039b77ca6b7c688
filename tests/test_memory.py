"""Facts about the user: what is taken from what they say, how they are kept, listed, removed and erased."""

from __future__ import annotations

import json
import os
import stat

import pytest

from voiceos.errors import VoiceosError
from voiceos.memory import MemoryStore, extract_facts
from voiceos.memory.store import memory_command, memory_path


def _texts(said: str) -> list[str]:
    return [fact.text for fact in extract_facts(said)]


@pytest.mark.parametrize(
    ("said", "fact"),
    [
        ("Hi, my name is Maya. What's your name?", "The user's name is Maya."),
        ("hello, I'm Tom", "The user's name is Tom."),
        ("You can call me Sam.", "The user's name is Sam."),
        ("I have a dog called Biscuit.", "The user has a dog called Biscuit."),
        ("My cat's name is Luna and she is old.", "The user has a cat called Luna."),
        ("my sister Ana is visiting", "The user's sister is called Ana."),
        ("I live in Lisbon, it is sunny.", "The user lives in Lisbon."),
        ("I just moved to Berlin and I feel lonely.", "The user lives in Berlin (moved there recently)."),
        ("I work at a bakery.", "The user works at a bakery."),
        ("I am a nurse.", "The user is a nurse."),
        ("I love jazz.", "The user likes jazz."),
        ("My favourite food is pizza.", "The user's favourite food is pizza."),
        ("I'm going to visit Japan next month.", "The user is going to visit Japan next month."),
        ("I'm allergic to peanuts.", "The user is allergic to peanuts."),
    ],
)
def test_what_the_user_says_about_themselves_becomes_a_fact(said, fact):
    assert fact in _texts(said)


@pytest.mark.parametrize(
    "said", ["I'm tired.", "I'm so happy today!", "I love you.", "My dog is sick.", "What is my name?", ""]
)
def test_feelings_questions_and_pronouns_are_not_taken_for_facts(said):
    assert _texts(said) == []


def test_a_newer_fact_for_the_same_slot_replaces_the_older():
    store = MemoryStore()
    store.learn("My name is Maya.")
    store.learn("I have a dog called Biscuit.")
    store.learn("Sorry, my name is actually Mia.")
    assert [fact.text for fact in store.facts] == ["The user has a dog called Biscuit.", "The user's name is Mia."]


def test_two_pets_are_two_facts():
    store = MemoryStore()
    store.learn("I have a dog called Biscuit. My dog Pepper is older.")
    assert len(store.facts) == 2


def test_without_a_path_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    store = MemoryStore()
    store.learn("My name is Maya.")
    assert not store.persistent and not any(tmp_path.rglob("*"))


def test_kept_facts_survive_a_restart_in_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    path = memory_path()
    MemoryStore(path).learn("My name is Maya. I have a dog called Biscuit.")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = MemoryStore(path)
    assert [fact.key for fact in again.facts] == ["name", "pet:dog:biscuit"]


def test_one_fact_can_be_removed_alone_and_a_wrong_number_is_one_clear_error(tmp_path):
    store = MemoryStore(tmp_path / "memory.json")
    store.learn("My name is Maya. I have a dog called Biscuit.")
    data = memory_command(store, 2)
    assert data["removed"]["text"] == "The user has a dog called Biscuit."
    assert [fact["key"] for fact in data["facts"]] == ["name"]
    assert [fact.key for fact in MemoryStore(tmp_path / "memory.json").facts] == ["name"]
    with pytest.raises(VoiceosError, match="no fact number 5"):
        memory_command(store, 5)
    with pytest.raises(VoiceosError, match="must be a fact number"):
        memory_command(store, "1")


def test_clear_forgets_everything_and_deletes_the_file(tmp_path):
    path = tmp_path / "memory.json"
    store = MemoryStore(path)
    store.learn("My name is Maya.")
    assert store.clear() == 1 and store.facts == [] and not path.exists()


def test_a_damaged_memory_file_is_ignored_not_fatal(tmp_path, caplog):
    path = tmp_path / "memory.json"
    path.write_text("{not json")
    assert MemoryStore(path).facts == []
    assert "cannot be read" in caplog.text
    path.write_text(json.dumps({"facts": [{"key": "name"}]}))
    assert MemoryStore(path).facts == []
