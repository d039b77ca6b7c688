"""Replay a recording through the endpointer and an end-of-turn strategy, as the daemon would hear it live.

Used by ``benchmarks/end_of_turn.py`` (how often each strategy cuts in at a mid-sentence pause, how soon it ends a
finished turn) and by the tests. The verdict is applied where the daemon applies it: at the check, if the user has
not gone on by then; the time it took is added to when the turn was decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from voiceos.config import VadOptions
from voiceos.turn.end_of_turn import EndOfTurn, TurnVerdict
from voiceos.vad import SpeechEnded, TurnCheck, VadSegmenter

FEED = 480  # 30 ms blocks, as the microphone delivers them


@dataclass(frozen=True)
class TurnEnd:
    end_s: float  # where the utterance ends (its last voiced frame)
    decided_s: float  # when the turn was over: the hangover's last frame, or the check plus the verdict's time
    by: str  # "model" or "silence"


@dataclass
class Replay:
    ends: list[TurnEnd] = field(default_factory=list)
    verdicts: list[TurnVerdict] = field(default_factory=list)


def replay(samples: np.ndarray, strategy: EndOfTurn, vad: VadOptions, rate: int = 16000) -> Replay:
    """Every turn end in ``samples`` (16 kHz float32) under ``strategy``."""
    segmenter = VadSegmenter(strategy.vad_options(vad), check_ms=strategy.check_ms)
    result = Replay()
    for pos in range(0, len(samples), FEED):
        now = min(pos + FEED, len(samples)) / rate
        for event in segmenter.feed(samples[pos : pos + FEED]):
            if isinstance(event, SpeechEnded):
                result.ends.append(TurnEnd(event.utterance.end_s, now, "silence"))
            elif isinstance(event, TurnCheck):
                verdict = strategy.verdict(event.audio)
                result.verdicts.append(verdict)
                if verdict.complete:
                    for ended in segmenter.end_turn(event.span):
                        if isinstance(ended, SpeechEnded):
                            decided = now + verdict.ms / 1000
                            result.ends.append(TurnEnd(ended.utterance.end_s, decided, "model"))
    for event in segmenter.flush():
        if isinstance(event, SpeechEnded):
            result.ends.append(TurnEnd(event.utterance.end_s, len(samples) / rate, "end of recording"))
    return result
