"""What a skill is: something that answers some intents without the language model, from a clock, the timers, the
reminders or the memory.

A skill gets every parse of the utterance for one of its intents (best first, as hassil ranks them) and returns a
:class:`SkillReply`, or None to let the next intent, and in the end the dialogue LM, answer instead ("what is the
capital of France" parses as a sum, and the calculator declines it). What a reply *does* (start a timer, forget a
fact) is its ``action``, run only once the reply stands: when it starts to be heard, or at once with no audio. A reply
that is dropped unheard (the user went on talking: the daemon's speculative reply) changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from voiceos.alarms import ReminderBook, TimerBoard
from voiceos.clock import Clock
from voiceos.config import SkillOptions
from voiceos.memory.store import MemoryStore
from voiceos.skills.intents import IntentMatch


@dataclass(frozen=True)
class FollowUp:
    """A question the reply asked ("For how long?"): the user's next words are offered to ``answer`` first; it
    returns the reply, or None when they are not an answer (then they are taken as usual)."""

    answer: Callable[[str, SkillContext], SkillReply | None]


@dataclass(frozen=True)
class SkillReply:
    speech: str  # what the assistant says; "" says nothing (after "stop", "never mind")
    intent: str  # the intent it answers ("skill" in `say --json` and `chat --jsonl`)
    action: Callable[[], object] | None = None  # the side effect, run once the reply stands (its result unused)
    follow_up: FollowUp | None = None
    learn: bool = True  # False: take no facts from these words (they are about the memory itself: "forget ...")


@dataclass
class AlarmControl:
    """What the skills may ask of the daemon: are alarms ringing, silence them, close the microphone (None: no
    microphone here, as in `voiceos chat`)."""

    ringing: Callable[[], bool] = lambda: False
    silence: Callable[[], None] = lambda: None
    mute: Callable[[], object] | None = None


@dataclass
class SkillContext:
    """What a skill may read and change in one turn."""

    clock: Clock
    options: SkillOptions
    memory: MemoryStore
    timers: TimerBoard | None = None  # None: nothing here could ring one (a one-shot `voiceos say`)
    reminders: ReminderBook | None = None
    alarms: AlarmControl = field(default_factory=AlarmControl)
    last_reply: str = ""  # what the assistant said last ("say that again")


# a one-shot `voiceos say` (or a Wyoming server, which has no speaker) cannot ring what it would set
NEEDS_DAEMON = "{what} need me running as the assistant. Start me with voiceos run, or as a service, then ask again."


class Skill(Protocol):
    """Answers the intents it names."""

    intents: ClassVar[tuple[str, ...]]

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        """A reply to one of ``matches`` (the parses of one intent, best first), or None to decline them all."""
        ...
