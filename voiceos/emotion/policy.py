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

from dataclasses import dataclass, field

from voiceos.emotion.labels import LABELS, EmotionResult

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
class EmotionPolicy:
    """The voice profile's emotion table used for each emotion heard in the user's turn."""

    anger: str = "calm"
    disgust: str = "calm"
    fear: str = "reassuring"
    joy: str = "joyful"
    neutral: str = "neutral"
    sadness: str = "gentle"
    surprise: str = "neutral"  # mostly questions (curiosity), see the module docstring

    def voice_for(self, label: str) -> str:
        return str(getattr(self, label, self.neutral))


@dataclass(frozen=True)
class EmotionOptions:
    enabled: bool = True  # false: no emotion head; the voice stays neutral and user_emotion is empty
    checkpoint: str | None = None  # the head's directory; null = the one shipped in voiceos/emotion/checkpoint
    min_confidence: float = field(default=0.45, metadata={"range": (0.0, 1.0)})
    context_note: str = "Note: the user seems {feeling}. Respond to that feeling warmly and briefly."
    # The emotions the note is added for (space-separated labels). Not joy by default: the embedded 135M model
    # answers "happy" notes with odd replies (emoji, role play), and answers good news well without one.
    note_for: str = "anger disgust fear sadness"
    # Added instead when the voice stays neutral (neutral, surprise, or an unsure reading); "" adds nothing there.
    neutral_note: str = ""
    # A condolence in the reply is not said when the head reads the turn as neutral or joy at least this sure (0: off).
    condolence_guard: float = field(default=0.0, metadata={"range": (0.0, 1.0)})
    policy: EmotionPolicy = field(default_factory=EmotionPolicy)

    def __post_init__(self) -> None:
        try:
            self.context_note.format(feeling="sad")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"context_note may only use the placeholder {{feeling}} ({err})") from None
        unknown = sorted(set(self.note_for.split()) - set(LABELS))
        if unknown:
            raise ValueError(f"note_for names unknown emotions {unknown} (known: {' '.join(LABELS)})")


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
