"""The conversation itself: "stop" / "be quiet" (end what is playing or ringing, say nothing), "stop listening" (the
daemon closes its microphone until `voiceos unmute`), "say that again",
"never mind", and honest answers where only the internet would know (the news, the weather): voiceos runs offline,
and a language model asked these would make them up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from voiceos.skills.base import SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch

OFFLINE = "I can't {what}: I run here on your computer, without the internet."
MUTED = "Okay, I'll stop listening. To turn me back on, run voiceos unmute."


class Conversation:
    intents: ClassVar[tuple[str, ...]] = (
        "VoiceosStop",
        "VoiceosRepeat",
        "HassNevermind",
        "VoiceosGetNews",
        "HassGetWeather",
        "VoiceosMute",
    )

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        match = matches[0]
        if match.intent == "VoiceosStop":  # the barge-in has stopped the reply already; ringing stops here
            return SkillReply("", match.intent, action=context.alarms.silence)
        if match.intent == "VoiceosMute":
            if context.alarms.mute is None:
                return SkillReply("There's no microphone for me to close here.", match.intent)
            return SkillReply(MUTED, match.intent, action=context.alarms.mute)
        if match.intent == "HassNevermind":
            return SkillReply("", match.intent)
        if match.intent == "VoiceosRepeat":
            if not context.last_reply:
                return SkillReply("I haven't said anything yet.", match.intent)
            return SkillReply(context.last_reply, match.intent)
        if match.intent == "VoiceosGetNews":
            return SkillReply(OFFLINE.format(what="read you the news"), match.intent)
        return SkillReply(OFFLINE.format(what="check the weather"), match.intent)
