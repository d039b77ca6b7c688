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


_CLAIMS = r"\b(my name is|my name's|i'm|i am|call me)\s+"
_TOLD_BACK = {"my name is": "your name is", "my name's": "your name's", "i'm": "you're", "i am": "you are"}
_ASKS_OWN_NAME = re.compile(r"\b(?:my (?:own )?name|who am i)\b", re.IGNORECASE)


def claims_name(sentence: str, name: str | None) -> bool:
    """Whether ``sentence`` has the assistant call itself ``name`` ("I'm Maya.", "My name is Maya"): the 135M model,
    even fine-tuned, sometimes does with the user's name; such a sentence is not said."""
    if not name:
        return False
    return re.search(_CLAIMS + re.escape(name) + r"\b", sentence, flags=re.IGNORECASE) is not None


def asks_own_name(user_text: str) -> bool:
    """The user asks for their own name ("What's my name?", "Do you know my name?", "Who am I?")."""
    questions = re.findall(r"[^.!?]*\?", user_text)  # "Hi, my name is Maya. What's your name?" asks the other's
    return any(_ASKS_OWN_NAME.search(question) for question in questions)


def told_back(sentence: str, name: str) -> str:
    """``sentence`` with the claim of ``name`` turned to the user ("I'm Sam." -> "You're Sam."): asked their name,
    the model sometimes answers in the first person, which would be the right answer said by the wrong person."""

    def turn(match: re.Match[str]) -> str:
        said = _TOLD_BACK.get(match.group(1).lower(), "you're")
        if match.start() == 0 or sentence[: match.start()].rstrip()[-1:] in ".!?":
            said = said[0].upper() + said[1:]
        return f"{said} {name}"

    return re.sub(_CLAIMS + re.escape(name) + r"\b", turn, sentence, flags=re.IGNORECASE)
