"""Requests answered without the language model: the time and date, timers, reminders, sums and units, the memory,
"stop", "say that again". Understood with Home Assistant's intent parser (hassil) and sentences
(home-assistant-intents) plus voiceos' own templates (``sentences/en.yaml``); each skill is a small class behind
:class:`~voiceos.skills.base.Skill`, and :class:`~voiceos.skills.responder.SkillResponder` asks them in turn."""

from voiceos.skills.base import AlarmControl, FollowUp, Skill, SkillContext, SkillReply
from voiceos.skills.responder import SkillResponder, default_skills

__all__ = ["AlarmControl", "FollowUp", "Skill", "SkillContext", "SkillReply", "SkillResponder", "default_skills"]
