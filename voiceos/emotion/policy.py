"""How the assistant answers an emotion it hears: the voice's emotion table, and a note for the dialogue LM.

The policy is configuration (``emotion:`` in config.yaml): each detected user emotion maps to an emotion table of the
voice profile (sadness -> gentle, anger -> calm, joy -> joyful, fear -> reassuring ...). A detection below
``min_confidence`` counts as neutral, so an unsure head does not colour the voice. For a confident detection of an
emotion in ``note_for`` that the policy answers with a non-neutral voice, ``context_note`` (with ``{feeling}`` filled
in) is added to the LM's context after the user's turn, so the words fit the voice; mapping an emotion to
``neutral`` means "do not react" (with ``neutral_note``, that note is added instead).

``surprise`` is neutral by default: GoEmotions-Ekman files curiosity and confusion under surprise, so nearly every
question a user asks reads as surprise, and a voice assistant should not sound excited about each one.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceos.config import EmotionOptions
from voiceos.emotion.labels import EmotionResult

FEELINGS = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "worried or afraid",
    "joy": "happy",
    "neutral": "calm",
    "sadness": "sad",
    "surprise": "surprised",
}


@dataclass(frozen=True)
class ReplyStyle:
    """What the policy made of one detection."""

    voice_emotion: str  # the voice profile's emotion table to speak with
    note: str | None  # added to the LM's context after the user's turn, or None


def reply_style(result: EmotionResult, options: EmotionOptions) -> ReplyStyle:
    label = result.label if result.confidence >= options.min_confidence else "neutral"
    voice = options.policy.voice_for(label)
    if voice == "neutral":
        return ReplyStyle(voice, options.neutral_note.strip() or None)
    if label not in options.note_for.split() or not options.context_note.strip():
        return ReplyStyle(voice, None)
    return ReplyStyle(voice, options.context_note.format(feeling=FEELINGS[label]))
