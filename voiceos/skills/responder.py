"""The skills as one responder, asked before the dialogue LM (Home Assistant's "prefer handling commands locally"):
the user's words go to a pending follow-up question first, then to hassil, then to the skill of each intent that
matched, best parse first. None of them answering means the LM answers.

State changes only when a turn stands (:meth:`SkillResponder.settle`): a speculative reply that is dropped because the
user kept talking neither answers nor clears a follow-up question.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import yaml

from voiceos.config import SkillOptions
from voiceos.errors import ConfigError
from voiceos.skills.arithmetic import Arithmetic
from voiceos.skills.base import FollowUp, Skill, SkillContext, SkillReply
from voiceos.skills.conversation import Conversation
from voiceos.skills.intents import IntentMatch, IntentRecognizer
from voiceos.skills.memory import Memory
from voiceos.skills.reminders import Reminders
from voiceos.skills.time_and_date import TimeAndDate
from voiceos.skills.timers import Timers

log = logging.getLogger(__name__)

SKILL_FAILED = "Sorry, something went wrong with that. Please try again."


def default_skills() -> list[Skill]:
    return [TimeAndDate(), Timers(), Reminders(), Arithmetic(), Memory(), Conversation()]


class SkillResponder:
    """hassil's intents, answered by ``skills``; ``options.sentences`` adds the user's own templates."""

    def __init__(self, options: SkillOptions, skills: Sequence[Skill] | None = None) -> None:
        self.skills = list(skills) if skills is not None else default_skills()
        self.by_intent = {intent: skill for skill in self.skills for intent in skill.intents}
        extra = [Path(options.sentences).expanduser()] if options.sentences else []
        try:
            self.recognizer = IntentRecognizer(self.by_intent, extra)
        except (OSError, yaml.YAMLError, ValueError, KeyError, TypeError) as err:
            where = f"skills.sentences ({options.sentences})" if extra else "the built-in sentences"
            raise ConfigError(f"{where}: cannot use the sentence templates: {str(err).splitlines()[0]}") from None
        self._follow_up: FollowUp | None = None

    def warm(self) -> None:
        self.recognizer.warm()

    def answer(self, text: str, context: SkillContext) -> SkillReply | None:
        """The skills' reply to ``text``, or None for the LM. Changes nothing: see :meth:`settle`. A skill that
        raises is logged and answered with a short apology; the next turn works as usual."""
        intent = "unknown"
        try:
            if self._follow_up is not None:
                reply = self._follow_up.answer(text, context)
                if reply is not None:
                    return reply
            for intent, matches in _by_intent(self.recognizer.ranked(text)):
                reply = self.by_intent[intent].handle(matches, context)
                if reply is not None:
                    return reply
        except Exception:
            log.exception("the %s skill failed", intent)
            return SkillReply(SKILL_FAILED, intent)
        return None

    def settle(self, reply: SkillReply | None) -> None:
        """The turn stands: its question (if it asked one) is the one the next words may answer."""
        self._follow_up = reply.follow_up if reply is not None else None

    def reset(self) -> None:
        self._follow_up = None


def _by_intent(matches) -> list[tuple[str, list[IntentMatch]]]:
    """The parses grouped by intent, intents in the order of their best parse."""
    groups: dict[str, list[IntentMatch]] = {}
    for match in matches:
        groups.setdefault(match.intent, []).append(match)
    return list(groups.items())
