"""The system prompt every turn starts with, and how long a spoken reply may run."""

from __future__ import annotations

import pytest

from voiceos.config import ConfigError, PersonaOptions, config_from_dict
from voiceos.dialogue.length import ends_sentence, wants_detail
from voiceos.dialogue.persona import persona_prompt
from voiceos.memory import extract_facts


def test_the_persona_opens_the_system_prompt_and_facts_follow_the_instructions():
    persona = PersonaOptions(name="Milo", description="You are kind.")
    prompt = persona_prompt(persona, "Answer briefly.", extract_facts("My name is Maya."))
    assert prompt.startswith("You are Milo, a voice assistant")
    assert prompt.index("You are kind.") < prompt.index("Answer briefly.") < prompt.index("The user's name is Maya.")
    assert "Your own name is Milo" in prompt


def test_without_facts_the_prompt_has_no_memory_lines():
    prompt = persona_prompt(PersonaOptions(), "Answer briefly.")
    assert "told you" not in prompt and "\n" not in prompt


def test_a_persona_name_that_is_not_a_short_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"persona.*short name"):
        config_from_dict({"persona": {"name": ""}})
    assert config_from_dict({"persona": {"name": "Juno"}}).persona.name == "Juno"


@pytest.mark.parametrize(
    ("said", "detail"),
    [
        ("Tell me a long story about a lighthouse keeper.", True),
        ("Can you explain how rainbows form?", True),
        ("Describe your favourite place in detail.", True),
        ("I lost my job today.", False),
        ("What is the capital of France?", False),
    ],
)
def test_only_a_request_for_length_lifts_the_sentence_cap(said, detail):
    assert wants_detail(said) is detail


def test_a_first_clause_is_not_a_sentence():
    assert ends_sentence("That is lovely.") and ends_sentence('He said "yes!"') and not ends_sentence("Well, you see,")


def test_a_sentence_that_takes_the_users_name_is_recognised():
    from voiceos.dialogue.persona import claims_name, user_name
    from voiceos.memory.facts import extract_facts

    name = user_name(extract_facts("Hi, my name is Maya."))
    assert name == "Maya"
    assert claims_name("My name is Maya.", name) and claims_name("Oh, I'm maya!", name)
    assert not claims_name("You're Maya, and I'm Milo.", name) and not claims_name("I'm Mayan.", name)
    assert not claims_name("My name is Maya.", None)
    assert user_name(extract_facts("I have a dog called Biscuit.")) is None
