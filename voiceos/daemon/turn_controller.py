"""Who speaks when: the daemon's turn policy as pure logic. VAD events, end-of-turn verdicts and turn results go in;
actions come out, for :class:`~voiceos.daemon.assistant.Assistant` to carry out (start a task, stop playback,
publish an event). Nothing here touches asyncio, a model or a device, so the policy is tested in milliseconds
(tests/test_turn_controller.py) beside the daemon tests that run it with the real models.

The policy, in words:

- While the user talks, the utterance so far is transcribed now and then, when nothing else runs (words while the
  user speaks: :mod:`voiceos.daemon.speculation`); speech after a pause drops the reply held at that pause.
- A pause in the user's speech starts a speculative transcription and, when nothing else runs, a *held* reply (the
  reply's head start, :mod:`voiceos.daemon.turn_state`). If the turn then ends with exactly those samples, the held
  reply is committed and plays; if the user goes on, it is dropped and leaves no trace.
- The end of an utterance starts a turn, cutting a turn still thinking (its words carry over to the next utterance:
  the user was not done). A say/listen reply cut that way by an utterance without words is answered after all.
- Speech over a reply interrupts it once the barge-in policy (:mod:`voiceos.daemon.interruption`) says so; speech
  over a microphone turn still thinking means the end of turn came too early: it is cut, its words kept.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from voiceos.config import Config
from voiceos.daemon.interruption import MinSpeechInterruption
from voiceos.daemon.turn_state import Turn
from voiceos.events import SpeechEndedEvent, SpeechStartedEvent
from voiceos.vad import (
    SpeechDiscarded,
    SpeechEnded,
    SpeechGrowing,
    SpeechPaused,
    SpeechStarted,
    TurnCheck,
    Utterance,
    VadEvent,
)

log = logging.getLogger(__name__)
# Any voice over an alarm's notice stops it (the user heard it: "stop", "thanks"), but not a blip of the chime's own
# echo, which the canceller can leak for a frame or two: a minimum far below a reply's barge-in minimum.
ALARM_BARGE_IN_MS = 250


class Phase(enum.Enum):
    """Where the conversation is, as far as turns go."""

    LISTENING = "listening"  # no turn runs
    HOLDING = "holding"  # a held reply runs on a pause of the user's; nothing is committed
    THINKING = "thinking"  # a turn runs and has played nothing yet
    SPEAKING = "speaking"  # its reply plays


# -- actions -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Publish:
    """Publish ``event`` on the bus."""

    event: Any


@dataclass(frozen=True)
class Speculate:
    """Transcribe the utterance so far (the user paused): speculative ASR."""

    utterance: Utterance


@dataclass(frozen=True)
class TranscribePartial:
    """Transcribe the utterance so far (the user is still talking): words while the user speaks."""

    utterance: Utterance


@dataclass(frozen=True)
class DropSpeculation:
    """Forget the speculative transcription: its utterance is dropped."""


@dataclass(frozen=True)
class CheckEndOfTurn:
    """Ask the end-of-turn strategy whether the paused utterance is a finished turn."""

    check: TurnCheck


@dataclass(frozen=True)
class HoldReply:
    """Run ``turn`` (held) on the speculative transcript of ``utterance``: it plays nothing until committed."""

    turn: Turn
    utterance: Utterance


@dataclass(frozen=True)
class CommitReply:
    """The turn ended at the pause: ``turn``'s held reply is the turn now (its events go out, its audio plays).
    ``current`` is False when it had already ended (it found no words): then only its held events go out."""

    turn: Turn
    utterance: Utterance
    current: bool


@dataclass(frozen=True)
class StartReply:
    """Transcribe ``utterance`` and answer it in ``turn``; without an utterance, answer the words carried over
    from ``resumes`` (a turn cut by speech that came to nothing)."""

    turn: Turn
    utterance: Utterance | None
    resumes: Turn | None = None


@dataclass(frozen=True)
class Interrupted:
    """``turn`` was cancelled (its flag is set): stop its playback if it speaks."""

    turn: Turn
    reason: str


Action = (
    Publish
    | Speculate
    | TranscribePartial
    | DropSpeculation
    | CheckEndOfTurn
    | HoldReply
    | CommitReply
    | StartReply
    | Interrupted
)


@dataclass(frozen=True)
class TurnPolicy:
    """The configuration the policy reads, taken from :class:`~voiceos.config.Config` (validated there)."""

    barge_in: bool = True
    barge_in_min_ms: int = 0
    speculate_reply: bool = True
    sequential: bool = False
    max_hold_s: float = 30.0  # a held reply not decided by then cancels itself (the VAD decides well before)

    @classmethod
    def from_config(cls, config: Config) -> TurnPolicy:
        return cls(
            barge_in=config.audio.barge_in,
            barge_in_min_ms=config.audio.barge_in_min_ms,
            speculate_reply=config.vad.speculate_reply,
            sequential=config.runtime.sequential,
            max_hold_s=config.vad.max_utterance_s + config.vad.hangover_ms / 1000,
        )


@dataclass(frozen=True)
class HeldReply:
    """A held turn answering the utterance ``span`` (start_s, end_s) as it stood at a pause."""

    span: tuple[float, float]
    turn: Turn


class TurnController:
    """The turn state (the current turn, the held reply, words carried over) and the decisions on it."""

    def __init__(self, policy: TurnPolicy) -> None:
        self.policy = policy
        self.turn: Turn | None = None  # the turn in progress (committed)
        self.held: HeldReply | None = None
        self.carry_over = ""  # user text of a turn cut before it spoke: the user was not done talking
        self.cut_by_speech: Turn | None = None  # that turn, until the speech that cut it ends or is discarded
        self.barge_in: MinSpeechInterruption[Turn] = MinSpeechInterruption(policy.barge_in_min_ms)
        # Of the open utterance's voice, what the echo stage judged the user's own (the audio loop sets it before
        # each batch of events): a reply is interrupted, and short sounds over it are dropped, by this measure.
        self.users_voice_s: float | None = None  # None: all of the voice is the user's (no echo stage)

    def speaking_started(self, turn: Turn, played_at: float) -> None:
        """Input: the first chunk of ``turn``'s reply reached the speaker, when the player had played ``played_at``
        seconds. From here the turn is speaking (the phase, barge-in rather than a cut, what the user heard)."""
        turn.speaking = True
        turn.played_at_start = played_at

    @property
    def phase(self) -> Phase:
        if self.turn is None:
            return Phase.HOLDING if self.held is not None else Phase.LISTENING
        return Phase.SPEAKING if self.turn.speaking else Phase.THINKING

    def use_policy(self, policy: TurnPolicy, *, new_vad: bool = False) -> None:
        """A reload: a new endpointer drops the held reply (its utterance is gone); a new barge-in minimum starts
        the barge-in policy afresh (else speech over the reply at this moment keeps its place in it)."""
        changed = policy.barge_in_min_ms != self.policy.barge_in_min_ms
        self.policy = policy
        if new_vad:
            self.drop_held()
        if new_vad or changed:
            self.barge_in = MinSpeechInterruption(policy.barge_in_min_ms)

    # -- VAD events in -------------------------------------------------------------------------------------------
    def on_vad_event(self, event: VadEvent) -> list[Action]:
        if isinstance(event, SpeechStarted):
            return [Publish(SpeechStartedEvent(stream_s=event.time_s)), *self._user_started_speaking()]
        if isinstance(event, SpeechGrowing):
            return self._growing(event.utterance)
        if isinstance(event, SpeechPaused):
            return self._paused(event.utterance)
        if isinstance(event, TurnCheck):  # is the user done? A "complete" ends the utterance in the VAD
            return [CheckEndOfTurn(event)]
        if isinstance(event, SpeechEnded):
            return self._ended(event)
        if isinstance(event, SpeechDiscarded):
            self.drop_held()
            self.barge_in.ended(0.0)
            log.debug("discarded a %.2f s blip", event.end_s - event.start_s)
            return self._resume_cut_turn()
        return []

    def _voice_over(self, voiced_s: float) -> float:
        """The voice that counts against the turn the utterance began over: over a reply, only what the echo stage
        judged the user's own (a canceller's residual after a cough reads as voice to webrtcvad); over an alarm's
        notice any voice, as the user heard it and answers (its own minimum is short)."""
        over = self.barge_in.over
        if (over is not None and over.source == "alarm") or self.users_voice_s is None:
            return voiced_s
        return min(voiced_s, self.users_voice_s)

    def on_voiced(self, voiced_s: float) -> list[Action]:
        """After each batch of frames: the open utterance has ``voiced_s`` of voice; is that a barge-in now?"""
        over = self.barge_in.due(self._voice_over(voiced_s))
        # Only the reply still in progress: one that ended on its own meanwhile has nothing left to cut.
        if over is not None and over is self.turn and not over.cancel.is_set():
            return self.interrupt(over, "barge-in")
        return []

    def _user_started_speaking(self) -> list[Action]:
        turn = self.turn
        if turn is None or turn.cancel.is_set() or not self.policy.barge_in:
            return []
        if turn.speaking:  # interrupts once the user has said enough: see on_voiced
            self.barge_in.started_over(turn, ALARM_BARGE_IN_MS if turn.source == "alarm" else None)
            return []
        if turn.source == "alarm":  # its notice was not playing yet: the user speaks, it waits for later
            return self.interrupt(turn, "the user speaks")
        if turn.source == "microphone":
            # The end of turn came too early: the user goes on. Their words so far join the next utterance.
            actions = self._cut(turn, "the user is still talking")
            self.cut_by_speech = turn
            return actions
        return []

    def _growing(self, utterance: Utterance) -> list[Action]:
        """The user talks on: a reply held at an earlier pause is moot (that pause did not end the turn), and the
        words so far are transcribed if nothing else needs the models."""
        self.drop_held()
        return [TranscribePartial(utterance)] if self.turn is None else []

    def _paused(self, utterance: Utterance) -> list[Action]:
        """The user paused: transcribe what they said so far and, when nothing else runs, answer it held."""
        self.drop_held()
        actions: list[Action] = [Speculate(utterance)]
        policy = self.policy
        if not policy.speculate_reply or policy.sequential or self.turn is not None:
            return actions
        if self.carry_over or self.cut_by_speech is not None:  # words of a cut turn would join this one
            return actions
        turn = Turn.held("microphone", max_hold_s=policy.max_hold_s)
        self.held = HeldReply((utterance.start_s, utterance.end_s), turn)
        return [*actions, HoldReply(turn, utterance)]

    def _ended(self, event: SpeechEnded) -> list[Action]:
        utt = event.utterance
        voiced = self._voice_over(utt.voiced_s)
        if self.barge_in.ended(voiced):
            log.info(
                "ignored %.2f s of the user's voice over the reply (%.2f s voiced): too short to interrupt it",
                voiced,
                utt.voiced_s,
            )
            self.drop_held()
            return [DropSpeculation()]  # its transcription would queue behind the reply
        actions: list[Action] = [
            Publish(SpeechEndedEvent(stream_s=utt.end_s, seconds=utt.duration_s, forced=event.forced))
        ]
        self.cut_by_speech = None  # its words join this utterance
        held = self._take_held((utt.start_s, utt.end_s))
        if held is not None:  # the reply started at the pause: it may play now
            return actions + self._commit(held, utt)
        # The turn exists from this moment on, so that speech starting again in this same batch of frames (a forced
        # cut at max_utterance_s) finds it and carries its words over to the next utterance.
        turn = Turn("", "microphone")
        actions += self._replace_turn(turn)
        return [*actions, StartReply(turn, utt)]

    def _resume_cut_turn(self) -> list[Action]:
        """The speech that cut a turn was only a blip (a cough, a click): answer the cut turn's words after all,
        instead of keeping them until the user speaks again."""
        cut, self.cut_by_speech = self.cut_by_speech, None
        if cut is None or (self.turn is not None and self.turn is not cut):
            return []
        log.info("the speech that cut the last turn was a blip: answering that turn's words now")
        turn = Turn("", "microphone")
        return [*self._replace_turn(turn), StartReply(turn, None, resumes=cut)]

    # -- the held reply ------------------------------------------------------------------------------------------
    def _take_held(self, span: tuple[float, float]) -> HeldReply | None:
        """The held reply of the utterance that just ended with exactly these samples; any other is dropped."""
        held = self.held
        if held is not None and held.span == span and not held.turn.cancel.is_set():
            self.held = None
            return held
        self.drop_held()
        return None

    def drop_held(self) -> None:
        """The user went on talking (or the endpointer changed): the held reply ends unheard, leaving no trace."""
        held, self.held = self.held, None
        if held is not None and held.turn.is_held:
            held.turn.cancel.set()
            log.debug("reply head start dropped: the user went on")

    def _commit(self, held: HeldReply, utterance: Utterance) -> list[Action]:
        turn = held.turn
        if turn.ended:  # it found nothing to answer (no words in the audio): the turn is over already
            return [CommitReply(turn, utterance, current=False)]
        previous, self.turn = self.turn, turn
        actions = self._cut(previous, "a new utterance") if previous is not None else []
        return [*actions, CommitReply(turn, utterance, current=True)]

    # -- turns ---------------------------------------------------------------------------------------------------
    def _replace_turn(self, turn: Turn) -> list[Action]:
        """``turn`` is the turn now; a previous one still thinking is cut, its words kept (a say/listen turn learns
        which utterance cut it: if that had no words, it is answered after all)."""
        previous, self.turn = self.turn, turn
        if previous is None:
            return []
        if previous.source != "microphone" and not previous.speaking and not previous.cancel.is_set():
            previous.cut_by = turn
        return self._cut(previous, "a new utterance")

    def start(self, turn: Turn) -> None:
        """A say/listen turn begins (the previous turn has ended: see Assistant's wait for idle)."""
        self.turn = turn

    def _cut(self, turn: Turn, reason: str) -> list[Action]:
        """Cancel ``turn``; a microphone turn that had not spoken yet hands the user's words to the next utterance.
        (Words still being transcribed carry over when their transcript arrives: see :meth:`transcribed`.)"""
        unspoken = turn.source == "microphone" and not turn.speaking
        actions = self.interrupt(turn, reason)
        if actions and unspoken and turn.user_text:
            self.carry_over = f"{self.carry_over} {turn.user_text}".strip()
        return actions

    def interrupt(self, turn: Turn, reason: str) -> list[Action]:
        """Cancel ``turn`` (the model thread stops at its next token or chunk); nothing if it was already."""
        if turn.cancel.is_set():
            return []
        turn.cancel.set()
        turn.interrupted, turn.interrupted_by = True, reason
        return [Interrupted(turn, reason)]

    def interrupt_current(self, reason: str) -> list[Action]:
        return self.interrupt(self.turn, reason) if self.turn is not None else []

    # -- results in ----------------------------------------------------------------------------------------------
    def transcribed(self, turn: Turn, text: str) -> str | None:
        """``turn``'s transcript arrived: the text to answer, with any words carried over; None when there is
        nothing to answer now (a dropped held reply leaves no trace; a cut turn's words carry over)."""
        if turn.is_held and turn.cancel.is_set():
            return None
        if self.carry_over and not turn.head_start:  # (none was waiting when a held reply began)
            text, self.carry_over = f"{self.carry_over} {text}".strip(), ""
        if turn.cancel.is_set():  # the user went on talking: this is the start of their next utterance
            self.carry_over = text
            return None
        return text

    def may_answer_again(self, turn: Turn) -> bool:
        """``turn`` (say/listen) was cut, before it spoke, by an utterance without words: is nothing else running,
        so that it is answered after all? (LiveKit's "false interruption".)"""
        return self.turn is None or self.turn is turn

    def ended(self, turn: Turn) -> bool:
        """``turn`` is over (answered, cut or failed); True if it was the turn in progress."""
        turn.ended = True
        if self.turn is turn:
            self.turn = None
            return True
        return False

    def reset(self) -> list[Action]:
        """A new conversation: the turn in progress stops, the held reply and any carried-over words go."""
        actions = self.interrupt_current("reset")
        self.drop_held()
        self.carry_over = ""
        return actions
