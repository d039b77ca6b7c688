"""One reply, whoever writes it: the speech writer every reply goes through (``speaker``) and the dialogue LM as the
responder of last resort (``dialogue``); the skills (voiceos.skills) answer first."""

from voiceos.reply.dialogue import SERVER_APOLOGY, DialogueOutcome, speak_dialogue_reply
from voiceos.reply.speaker import ReplySpeaker, SentenceSpan

__all__ = ["SERVER_APOLOGY", "DialogueOutcome", "ReplySpeaker", "SentenceSpan", "speak_dialogue_reply"]
