"""How an end-of-turn strategy decides on real speech: false cut-ins at mid-sentence pauses, and how soon it ends a
finished turn. Shared by ``benchmarks/end_of_turn.py`` and ``voiceos bench``.

Cases, from every recording in a speech directory (its ``manifest.csv``) plus ``jfk.flac`` beside it when present:
- finished turns: the recording, then 1.5 s of its own background noise;
- mid-sentence pauses: the recording cut at a word boundary inside the sentence (Whisper's word times; at least two
  words on each side; up to four per recording), with 200, 400, 600 or 800 ms of its background noise put in. A turn
  that ends in that pause is a false cut-in: the user was not done.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voiceos.asr import Transcriber, Transcript, load_transcriber
from voiceos.audio.files import read_audio
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import AsrOptions, Config, TurnOptions, VadOptions
from voiceos.turn.end_of_turn import EndOfTurn
from voiceos.turn.replay import replay

log = logging.getLogger(__name__)

PAUSES_MS = (200, 400, 600, 800)
BOUNDARIES_PER_RECORDING = 4
TRAILING_S = 1.5
WORD_SLACK_S = 0.2  # Whisper's word times are rough: an end this far past the boundary is still at the pause


@dataclass(frozen=True)
class FinishedTurn:
    name: str
    audio: np.ndarray


@dataclass(frozen=True)
class PausedSentence:
    name: str
    word_start_s: float  # where the word before the pause begins
    at_s: float  # the boundary the pause was put in at
    pause_ms: int
    audio: np.ndarray


def recordings(speech_dir: Path) -> list[tuple[str, np.ndarray]]:
    with open(speech_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found = [(Path(r["path"]).name, read_audio(speech_dir / r["path"], SAMPLE_RATE)) for r in rows]
    jfk = speech_dir.parent / "jfk.flac"
    return [*found, ("jfk.flac", read_audio(jfk, SAMPLE_RATE))] if jfk.is_file() else found


def background(samples: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """Noise at the recording's own floor (the 1st percentile of its 30 ms frames' RMS; the 10th is speech)."""
    frames = samples[: len(samples) // 480 * 480].reshape(-1, 480)
    floor = float(np.percentile(np.sqrt((frames**2).mean(axis=1)), 1))
    return np.random.default_rng(seed).normal(0.0, floor, int(seconds * SAMPLE_RATE)).astype(np.float32)


def pause_points(transcriber: Transcriber, samples: np.ndarray) -> list[tuple[float, float]]:
    """Word boundaries inside the sentence, each as (where the word before it starts, the boundary)."""
    words = transcriber.transcribe(samples, word_timestamps=True).words
    inside = [(a.start_s, (a.end_s + b.start_s) / 2) for a, b in itertools.pairwise(words[1:-1])]
    if len(inside) <= BOUNDARIES_PER_RECORDING:
        return inside
    picks = np.linspace(0, len(inside) - 1, BOUNDARIES_PER_RECORDING).round().astype(int)
    return [inside[i] for i in sorted(set(picks))]


def build_cases(transcriber: Transcriber, speech_dir: Path) -> tuple[list[FinishedTurn], list[PausedSentence]]:
    finished, paused = [], []
    for seed, (name, samples) in enumerate(recordings(speech_dir)):
        finished.append(FinishedTurn(name, np.concatenate([samples, background(samples, TRAILING_S, seed)])))
        for word_start, at in pause_points(transcriber, samples):
            cut = int(at * SAMPLE_RATE)
            for pause_ms in PAUSES_MS:
                gap = background(samples, pause_ms / 1000, seed + pause_ms)
                audio = np.concatenate([samples[:cut], gap, samples[cut:], background(samples, TRAILING_S, seed)])
                paused.append(PausedSentence(name, word_start, at, pause_ms, audio))
    return finished, paused


def score(
    strategy: EndOfTurn,
    vad: VadOptions,
    finished: list[FinishedTurn],
    paused: list[PausedSentence],
    transcribe: Callable[[np.ndarray], Transcript] | None = None,
) -> dict[str, Any]:
    """What ``strategy`` decides on the cases: delays after finished turns, false cut-ins at the pauses. With
    ``transcribe``, a "complete" waits for the pause's transcript, as in the daemon (``turn.text_check``)."""
    delays, early, verdict_ms, by_model, overruled = [], 0, [], 0, 0
    for case in finished:
        result = replay(case.audio, strategy, vad, transcribe=transcribe)
        overruled += result.overruled
        verdict_ms += [v.ms for v in result.verdicts]
        real = [e for e in result.ends if e.by != "end of recording"]
        if not real:
            continue
        last = max(real, key=lambda e: e.end_s)
        delays.append((last.decided_s - last.end_s) * 1000)
        by_model += last.by == "model"
        early += len(real) - 1  # each recording is one turn: any other end cut it
    cut_ins = dict.fromkeys(PAUSES_MS, 0)
    for pause in paused:
        result = replay(pause.audio, strategy, vad, transcribe=transcribe)
        overruled += result.overruled
        verdict_ms += [v.ms for v in result.verdicts]
        # the turn ended after the word before the pause began and before the words after it: a cut-in there
        if any(pause.word_start_s < e.end_s <= pause.at_s + WORD_SLACK_S for e in result.ends):
            cut_ins[pause.pause_ms] += 1
    per_pause = max(1, len(paused) // len(PAUSES_MS))
    return {
        "strategy": strategy.describe(),
        "finished_turns": len(finished),
        "end_delay_ms_p50": round(float(np.median(delays)), 1) if delays else None,
        "end_delay_ms_p90": round(float(np.percentile(delays, 90)), 1) if delays else None,
        "ended_by_model": by_model,
        "cut_inside_finished_recordings": early,
        "mid_sentence_pauses": len(paused),
        "false_cut_in_rate": round(sum(cut_ins.values()) / max(1, len(paused)), 3),
        "false_cut_ins_by_pause_ms": {str(ms): f"{n}/{per_pause}" for ms, n in cut_ins.items()},
        "verdict_ms_p50": round(float(np.median(verdict_ms)), 1) if verdict_ms else None,
        "complete_verdicts_overruled_by_words": overruled,
    }


def word_timer(transcriber: Transcriber) -> Transcriber:
    """``transcriber`` if it gives word times, else Whisper (the cases cut sentences at its word boundaries)."""
    return transcriber if transcriber.word_times else load_transcriber(AsrOptions(engine="whisper"))


def _key(samples: np.ndarray) -> tuple[int, int]:
    return len(samples), hash(samples.tobytes())


def words_of(transcriber: Transcriber) -> Callable[[np.ndarray], Transcript]:
    """The transcriber's transcript of each utterance, computed once (strategies and settings replay the same
    utterances; each keeps the time its first transcription took)."""
    heard: dict[tuple[int, int], Transcript] = {}

    def transcribe(samples: np.ndarray) -> Transcript:
        key = _key(samples)
        if key not in heard:
            heard[key] = transcriber.transcribe(samples)
        return heard[key]

    return transcribe


class RememberedPredictions:
    """A turn-completion model whose prediction for each audio is computed once (see :func:`words_of`)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._seen: dict[tuple[int, int], Any] = {}

    def predict(self, audio: np.ndarray) -> Any:
        key = _key(audio)
        if key not in self._seen:
            self._seen[key] = self.model.predict(audio)
        return self._seen[key]


TIMERS_MS = (400, 500, 600, 700, 800, 900, 1000, 1200, 1500)  # the silence that ends a turn anyway, swept
TARGET_FALSE_CUT_INS = 0.05  # LiveKit's eot-bench: the endpoint delay at 5% false cut-offs


def _strategy(name: str, options: TurnOptions, vad: VadOptions, model: Any) -> tuple[EndOfTurn, VadOptions]:
    from voiceos.turn.end_of_turn import SilenceOnly, TurnModel, WordsEndOfTurn

    if name == "silence":
        return SilenceOnly(), dataclasses.replace(vad, hangover_ms=options.max_silence_ms)
    if name == "words":
        return WordsEndOfTurn(options), vad
    return TurnModel(model, options), vad


def compare_strategies(config: Config, speech_dir: Path) -> dict[str, dict[str, Any]]:
    """Each end-of-turn strategy on the same cases, with the configured ASR engine's words (for ``voiceos bench``):
    as configured (the silence timer with ``vad.hangover_ms``), and the smallest timer (``turn.max_silence_ms``,
    the hangover for the silence timer) at which false cut-ins fall to 5%, with its delay."""
    from voiceos.turn.end_of_turn import strategy_name
    from voiceos.turn.smart_turn import SmartTurnModel, TurnModelUnavailable

    transcriber = load_transcriber(config.asr)
    words = words_of(transcriber)
    finished, paused = build_cases(word_timer(transcriber), speech_dir)
    try:
        model = RememberedPredictions(SmartTurnModel.load(config.turn.threads))
    except TurnModelUnavailable as err:
        log.warning("end of turn: smart_turn left out of the comparison: %s", err)
        model = None
    configured = strategy_name(config.turn)
    result: dict[str, dict[str, Any]] = {}
    for name in ("silence", "smart_turn", "words"):
        if name == "smart_turn" and model is None:
            continue
        silence = name == "silence"
        options = dataclasses.replace(config.turn, max_silence_ms=config.vad.hangover_ms) if silence else config.turn
        strategy, vad = _strategy(name, options, config.vad, model)
        scored = score(strategy, vad, finished, paused, words)
        scored["configured"] = name == configured
        scored["asr_engine"] = transcriber.engine
        scored.update(_at_target(name, options, config.vad, model, finished, paused, words))
        result[name] = scored
    return result


def _at_target(name, options, vad, model, finished, paused, words) -> dict[str, Any]:
    """The smallest timer of :data:`TIMERS_MS` whose false cut-ins are at most 5%, and its delays."""
    for timer in TIMERS_MS:
        if timer <= options.check_ms and name != "silence":
            continue
        strategy, timed_vad = _strategy(name, dataclasses.replace(options, max_silence_ms=timer), vad, model)
        scored = score(strategy, timed_vad, finished, paused, words)
        if scored["false_cut_in_rate"] <= TARGET_FALSE_CUT_INS:
            return {
                "timer_at_5pct_false_cut_ins_ms": timer,
                "delay_at_5pct_false_cut_ins_ms": scored["end_delay_ms_p50"],
                "false_cut_in_rate_there": scored["false_cut_in_rate"],
            }
    return {"timer_at_5pct_false_cut_ins_ms": None, "delay_at_5pct_false_cut_ins_ms": None}
