"""What the assistant knows about the user, by voice: "what do you know about me", "forget that I have a dog",
"forget everything". The facts are the memory's (voiceos.memory); ``voiceos memory`` and ``voiceos forget`` are the
same from the command line."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import ClassVar

from voiceos.memory import Fact
from voiceos.skills.base import SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch

LISTED = 6  # facts said aloud at most; `voiceos memory` lists them all
# words that say nothing about which fact is meant ("forget THAT I HAVE A dog")
NOT_CONTENT_WORDS = (
    "i i'm me my mine a an the that this what which about you your told tell said say know knew remember is am are "
    "was were have has had do does to of for and or in on at that's it's"
)
NOT_CONTENT = frozenset(NOT_CONTENT_WORDS.split())


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def matching_facts(words: str, facts: Sequence[Fact]) -> list[Fact]:
    """The facts ``words`` point at: each content word ("dog", "sister", "name", "live") is in the fact."""
    wanted = [w for w in re.findall(r"[a-z0-9']+", words.lower()) if w not in NOT_CONTENT and len(w) > 1]
    if not wanted:
        return []
    found = []
    for fact in facts:
        haystack = f"{fact.key} {fact.text}".lower()
        if all(w in haystack or w.rstrip("s") in haystack for w in wanted):
            found.append(fact)
    return found


class Memory:
    intents: ClassVar[tuple[str, ...]] = ("VoiceosWhatDoYouKnow", "VoiceosForget")

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        match = matches[0]
        facts = context.memory.facts
        if match.intent == "VoiceosWhatDoYouKnow":
            if not facts:
                return SkillReply("I don't know anything about you yet.", match.intent, learn=False)
            said = [fact.told_back() for fact in facts[-LISTED:]]
            more = f" That's the latest {len(said)} of {len(facts)}." if len(facts) > LISTED else ""
            return SkillReply(f"You told me that {_and(said)}.{more}", match.intent, learn=False)
        if match.metadata.get("voiceos_all"):
            if not facts:
                return SkillReply("I don't know anything about you yet.", match.intent, learn=False)
            return SkillReply(
                "Okay, I've forgotten everything you told me about yourself.",
                match.intent,
                action=lambda: context.memory.clear(),
                learn=False,
            )
        for candidate in matches:
            what = candidate.words("what")
            if what.lower().strip(" .!") in ("it", "about it", "that"):  # "forget it": never mind
                return SkillReply("", "HassNevermind", learn=False)
            found = matching_facts(what, facts)
            if found:
                told = _and([fact.told_back() for fact in found])
                return SkillReply(
                    f"Okay, I've forgotten that {told}.",
                    candidate.intent,
                    action=functools.partial(context.memory.forget, found),
                    learn=False,
                )
        return SkillReply("I don't know anything about that.", match.intent, learn=False)
