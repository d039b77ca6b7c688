"""The system prompt of every turn: who the assistant is (``persona``), how it speaks, and what it knows about the user.

The persona and the instructions never change between turns; the facts change only when the user tells something
new. The LM keeps the KV cache of the last system prompt (``DialogueLM.persona_prefix``), so a turn pays for the
system prompt only after a new fact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from voiceos.config import Config, PersonaOptions
from voiceos.memory.facts import Fact


def persona_prompt(persona: PersonaOptions, instructions: str, facts: Sequence[Fact] = ()) -> str:
    """The system prompt: the persona, the speaking instructions, then the facts about the user (if any)."""
    parts = [f"You are {persona.name}, a voice assistant running privately on the user's own computer."]
    if persona.description.strip():
        parts.append(persona.description.strip())
    if instructions.strip():
        parts.append(instructions.strip())
    lines = [" ".join(parts)]
    if facts:
        lines.append("What the user told you about themselves: " + " ".join(fact.text for fact in facts))
        lines.append(f"Your own name is {persona.name}; the user's name is theirs, never yours.")
    return "\n".join(lines)


def runtime_system_prompt(config: Config) -> str:
    """The system prompt of a turn before the user has told anything about themselves: what the emotion head is
    trained and scored under (it reads the LM's states of the user's turn, which follow the system prompt)."""
    return persona_prompt(config.persona, config.dialogue.system_prompt)


def user_name(facts: Sequence[Fact]) -> str | None:
    """The user's name, from the ``name`` fact (``"The user's name is Maya."``)."""
    for fact in facts:
        if fact.key == "name":
            match = re.fullmatch(r"The user's name is (.+)\.", fact.text)
            return match.group(1) if match else None
    return None


def claims_name(sentence: str, name: str | None) -> bool:
    """Whether ``sentence`` has the assistant call itself ``name`` ("I'm Maya.", "My name is Maya"): the 135M model,
    even fine-tuned, sometimes does with the user's name; such a sentence is not said."""
    if not name:
        return False
    pattern = rf"\b(?:my name is|my name's|i'm|i am|call me)\s+{re.escape(name)}\b"
    return re.search(pattern, sentence, flags=re.IGNORECASE) is not None
