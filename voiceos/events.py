"""The events of a conversation: the vocabulary shared by the daemon, the control socket, logs and the benchmark.

Every event is a small frozen dataclass with a wire name; :func:`to_wire` gives the JSON object sent to
``events`` subscribers on the control socket: ``{"event": <name>, "t": <unix seconds>, ...fields}``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    name: ClassVar[str] = "event"
    t: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class StateChanged(Event):
    """The assistant's state: ``starting``, ``listening``, ``thinking``, ``speaking`` or ``no_audio``."""

    name: ClassVar[str] = "state"
    state: str
    detail: str = ""


@dataclass(frozen=True)
class SpeechStartedEvent(Event):
    name: ClassVar[str] = "speech_started"
    stream_s: float = 0.0  # position in the microphone stream


@dataclass(frozen=True)
class SpeechEndedEvent(Event):
    name: ClassVar[str] = "speech_ended"
    stream_s: float = 0.0
    seconds: float = 0.0  # length of the utterance handed to ASR
    forced: bool = False  # cut at vad.max_utterance_s rather than ended by silence


@dataclass(frozen=True)
class TurnVerdictEvent(Event):
    """The end-of-turn strategy heard a pause (voiceos.turn): is the user done?"""

    name: ClassVar[str] = "turn_verdict"
    complete: bool
    probability: float
    ms: float  # what the verdict cost
    ended_turn: bool = False  # it ended the turn (False: the user had gone on meanwhile, or it was incomplete)
    overruled_by_words: bool = False  # "complete", but the pause's transcript stopped mid-phrase (turn.text_check)
    stream_s: float = 0.0  # where the pause began in the microphone stream


@dataclass(frozen=True)
class TranscriptEvent(Event):
    name: ClassVar[str] = "transcript"
    text: str
    source: str = "microphone"  # microphone | say | listen


@dataclass(frozen=True)
class UtteranceIgnored(Event):
    """An utterance not addressed to the assistant (wake.mode: name): dropped unanswered. Only its length is told:
    what it said is never logged, kept or published."""

    name: ClassVar[str] = "ignored"
    seconds: float


@dataclass(frozen=True)
class UserEmotionEvent(Event):
    name: ClassVar[str] = "user_emotion"
    label: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplyDelta(Event):
    name: ClassVar[str] = "reply_delta"
    text: str


@dataclass(frozen=True)
class SpeakingStarted(Event):
    name: ClassVar[str] = "speaking_started"
    text: str = ""  # the first chunk about to be heard


@dataclass(frozen=True)
class SpeakingEnded(Event):
    name: ClassVar[str] = "speaking_ended"
    interrupted: bool = False
    spoken_text: str = ""  # what was actually heard (all of the reply unless interrupted)
    audio_s: float = 0.0  # seconds of the reply's audio that were played


@dataclass(frozen=True)
class TimingsEvent(Event):
    name: ClassVar[str] = "timings"
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TimerStarted(Event):
    name: ClassVar[str] = "timer_started"
    id: int
    seconds: float
    timer_name: str | None = None


@dataclass(frozen=True)
class TimerFinished(Event):
    """A timer is done: its notice (after a chime) is said now, or once the conversation leaves room."""

    name: ClassVar[str] = "timer_finished"
    id: int
    seconds: float
    timer_name: str | None = None
    notice: str = ""


@dataclass(frozen=True)
class ReminderDue(Event):
    name: ClassVar[str] = "reminder_due"
    id: str
    task: str
    due: str  # ISO 8601, local time
    notice: str = ""


@dataclass(frozen=True)
class ErrorEvent(Event):
    name: ClassVar[str] = "error"
    message: str


def to_wire(event: Event) -> dict[str, Any]:
    data = {"event": event.name}
    data.update(dataclasses.asdict(event))
    return data
