"""Replay a recording through the endpointer and an end-of-turn strategy, as the daemon would hear it live.

Used by ``voiceos.turn.evaluate`` (``benchmarks/end_of_turn.py``, ``voiceos bench``) and the tests. The verdict is
applied where the daemon applies it: at the check, if the user has not gone on by then; the time it took is added
to when the turn was decided. With ``transcribe``, a "complete" waits for the transcript of the utterance as the
daemon's speculative one (started at the pause event; its ``elapsed_ms`` is what it took) and the strategy may
overrule it by its words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voiceos.asr import Transcript
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import VadOptions
from voiceos.turn.end_of_turn import EndOfTurn, TurnVerdict
from voiceos.vad import SpeechEnded, SpeechPaused, TurnCheck, VadSegmenter

FEED = 480  # 30 ms blocks, as the microphone delivers them


@dataclass(frozen=True)
class TurnEnd:
    end_s: float  # where the utterance ends (its last voiced frame)
    decided_s: float  # when the turn was over: the hangover's last frame, or the check plus the verdict's time
    by: str  # "model", "silence" or "end of recording"


@dataclass
class Replay:
    ends: list[TurnEnd] = field(default_factory=list)
    verdicts: list[TurnVerdict] = field(default_factory=list)
    overruled: int = 0  # "complete" verdicts whose transcript stopped mid-phrase


def replay(
    samples: np.ndarray,
    strategy: EndOfTurn,
    vad: VadOptions,
    rate: int = SAMPLE_RATE,
    transcribe: Callable[[np.ndarray], Transcript] | None = None,
) -> Replay:
    """Every turn end in ``samples`` (16 kHz float32) under ``strategy``."""
    segmenter = VadSegmenter(strategy.vad_options(vad), check_ms=strategy.check_ms)
    result = Replay()
    paused_at = 0.0  # when the last pause event came: the daemon's speculative transcript starts then
    for pos in range(0, len(samples), FEED):
        now = min(pos + FEED, len(samples)) / rate
        for event in segmenter.feed(samples[pos : pos + FEED]):
            if isinstance(event, SpeechPaused):
                paused_at = now
            elif isinstance(event, SpeechEnded):
                result.ends.append(TurnEnd(event.utterance.end_s, now, "silence"))
            elif isinstance(event, TurnCheck):
                verdict = strategy.verdict(event.audio)
                result.verdicts.append(verdict)
                if not verdict.complete:
                    continue
                decided = now + verdict.ms / 1000
                if transcribe is not None and strategy.uses_words:
                    transcript = transcribe(event.utterance.samples)
                    decided = max(decided, paused_at + transcript.elapsed_ms / 1000)
                    if strategy.unfinished(transcript.text):
                        result.overruled += 1
                        continue
                for ended in segmenter.end_turn(event.span):
                    if isinstance(ended, SpeechEnded):
                        result.ends.append(TurnEnd(ended.utterance.end_s, decided, "model"))
    for event in segmenter.flush():
        if isinstance(event, SpeechEnded):
            result.ends.append(TurnEnd(event.utterance.end_s, len(samples) / rate, "end of recording"))
    return result
