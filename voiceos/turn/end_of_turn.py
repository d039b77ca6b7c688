"""End of turn as a small strategy (the shape of Pipecat's turn analyzers): when does a pause end the user's turn?

- :class:`SilenceOnly`: the VAD's hangover (``vad.hangover_ms`` of silence) alone ends a turn.
- :class:`TurnModel`: after ``turn.check_ms`` of silence the turn-completion model hears the utterance so far; a
  complete turn ends there (once the pause's transcript, if ``turn.text_check``, does not stop mid-phrase), and a
  reply that was prepared at the pause plays at once. An incomplete one goes on until ``turn.max_silence_ms`` of
  silence, then ends anyway.
- :class:`WordsEndOfTurn`: after ``turn.check_ms`` of silence the pause's transcript decides alone: words that end a
  sentence end the turn there, others wait for ``turn.max_silence_ms``.

The VAD asks (:class:`voiceos.vad.TurnCheck`); the daemon runs :meth:`EndOfTurn.verdict` off the event loop and,
on "complete", ends the utterance with :meth:`voiceos.vad.VadSegmenter.end_turn`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from voiceos.config import TurnOptions, VadOptions
from voiceos.turn.smart_turn import SmartTurnModel, TurnModelUnavailable, bundled_model_path
from voiceos.turn.text import ends_sentence, sounds_unfinished

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnVerdict:
    complete: bool
    probability: float
    ms: float  # what deciding cost


class EndOfTurn(Protocol):
    name: str
    check_ms: int  # silence after which verdict() is asked; 0: never (the hangover alone decides)
    uses_words: bool  # a "complete" waits for the pause's transcript, which unfinished() may overrule it by

    def vad_options(self, vad: VadOptions) -> VadOptions:
        """The endpointer's options under this strategy (its hangover is the longest silence in a turn)."""
        ...

    def verdict(self, audio: np.ndarray) -> TurnVerdict:
        """Is the turn in ``audio`` (16 kHz, the pause included) complete? Blocking."""
        ...

    def unfinished(self, transcript: str) -> bool:
        """Does ``transcript`` (of the utterance up to the pause) overrule a "complete" verdict?"""
        ...

    def describe(self) -> str: ...


class SilenceOnly:
    name = "silence"
    check_ms = 0
    uses_words = False

    def __init__(self, reason: str = "") -> None:
        self.reason = reason  # why the turn model is not in use, when it was wanted

    def vad_options(self, vad: VadOptions) -> VadOptions:
        return vad

    def verdict(self, audio: np.ndarray) -> TurnVerdict:
        return TurnVerdict(False, 0.0, 0.0)

    def unfinished(self, transcript: str) -> bool:
        return False

    def describe(self) -> str:
        return "silence only (vad.hangover_ms)" + (f": {self.reason}" if self.reason else "")


class TurnModel:
    name = "smart_turn"

    def __init__(self, model: SmartTurnModel, options: TurnOptions) -> None:
        self.model = model
        self.options = options
        self.check_ms = options.check_ms
        self.uses_words = options.text_check

    def vad_options(self, vad: VadOptions) -> VadOptions:
        return dataclasses.replace(vad, hangover_ms=max(self.options.max_silence_ms, self.check_ms))

    def verdict(self, audio: np.ndarray) -> TurnVerdict:
        prediction = self.model.predict(audio)
        return TurnVerdict(prediction.probability >= self.options.threshold, prediction.probability, prediction.ms)

    def unfinished(self, transcript: str) -> bool:
        return self.uses_words and sounds_unfinished(transcript)

    def describe(self) -> str:
        o = self.options
        words = ", unless its words stop mid-phrase" if o.text_check else ""
        return (
            f"Smart Turn v3.2 after {o.check_ms} ms of silence (complete at p >= {o.threshold}{words}), "
            f"else the turn ends after {o.max_silence_ms} ms"
        )


class WordsEndOfTurn:
    """The pause's transcript decides: a sentence that ends (terminal punctuation, as both engines write it, and no
    dangling last word) ends the turn after ``turn.check_ms``; otherwise ``turn.max_silence_ms`` does. No model of
    its own: the transcript is the one the reply needs anyway (voiceos.turn.text)."""

    name = "words"
    uses_words = True

    def __init__(self, options: TurnOptions) -> None:
        self.options = options
        self.check_ms = options.check_ms

    def vad_options(self, vad: VadOptions) -> VadOptions:
        return dataclasses.replace(vad, hangover_ms=max(self.options.max_silence_ms, self.check_ms))

    def verdict(self, audio: np.ndarray) -> TurnVerdict:
        return TurnVerdict(True, 1.0, 0.0)  # (the words decide: unfinished())

    def unfinished(self, transcript: str) -> bool:
        return not ends_sentence(transcript)

    def describe(self) -> str:
        o = self.options
        return (
            f"the pause's words after {o.check_ms} ms of silence (a sentence that ends ends the turn), "
            f"else the turn ends after {o.max_silence_ms} ms"
        )


def strategy_name(options: TurnOptions) -> str:
    """The strategy ``turn.end_of_turn`` names; ``auto`` is ``smart_turn`` where its model is installed."""
    if options.end_of_turn != "auto":
        return options.end_of_turn
    try:
        bundled_model_path()
    except TurnModelUnavailable:
        return "silence"
    return "smart_turn"


def load_end_of_turn(options: TurnOptions) -> EndOfTurn:
    """The configured strategy; ``auto`` is the turn model where it loads, silence only elsewhere (logged)."""
    if options.end_of_turn == "silence":
        return SilenceOnly()
    if options.end_of_turn == "words":
        return WordsEndOfTurn(options)
    try:
        return TurnModel(SmartTurnModel.load(options.threads), options)
    except TurnModelUnavailable as err:
        if options.end_of_turn == "smart_turn":
            raise
        log.warning("end of turn: silence only, %s", err)
        return SilenceOnly(str(err))
