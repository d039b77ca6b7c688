"""``voiceos bench``: how long the user waits, measured at the audio level on real (virtual) devices.

It starts a private PulseAudio server with a virtual microphone and speaker (:mod:`voiceos.audio.virtual`), runs
the real daemon on it, speaks real recordings into the microphone and records both the microphone and the speaker.
For every utterance: end of user speech (last loud 20 ms window on the microphone) -> first reply sample (first loud
window on the speaker after it). The daemon's events give the per-stage breakdown; ``output_buffering`` is what is
left between the synthesized first chunk and the first sample heard (player queue, PortAudio and sound server).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from voiceos.audio.files import read_audio
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.daemon.harness import config_with
from voiceos.errors import VoiceosError

log = logging.getLogger(__name__)

MIC_RATE, SPEAKER_RATE = SAMPLE_RATE, 48000  # the virtual microphone speaks at the rate of speech
LOUD = 0.01  # RMS of a 20 ms window that counts as sound
DEFAULT_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx"
BENCH_EVENT_TIMEOUT_S = 180.0
STAGES = ("endpointing", "asr", "lm_first_token", "first_sentence", "tts_first_audio", "output_buffering")


def loud_windows(samples: np.ndarray, rate: int) -> np.ndarray:
    """Whether each whole 20 ms window of ``samples`` is louder than :data:`LOUD` (RMS)."""
    hop = rate // 50
    n = len(samples) // hop
    if n == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop) ** 2, axis=1))
    return rms > LOUD


def last_sound_end(samples: np.ndarray, rate: int, start_s: float, end_s: float) -> float | None:
    """Seconds into ``samples`` where the last loud window between start_s and end_s ends."""
    loud = loud_windows(samples, rate)
    first, last = int(start_s * 50), min(len(loud), int(end_s * 50) + 1)
    hits = np.flatnonzero(loud[first:last])
    return (first + hits[-1] + 1) / 50 if hits.size else None


def first_sound_start(samples: np.ndarray, rate: int, after_s: float) -> float | None:
    loud = loud_windows(samples, rate)
    first = int(after_s * 50)
    hits = np.flatnonzero(loud[first:])
    return (first + hits[0]) / 50 if hits.size else None


def manifest_rows(speech_dir: Path) -> list[dict[str, str]]:
    """The rows of ``speech_dir/manifest.csv`` (``path``, ``transcript``, ...); a clear error when there are none."""
    manifest = speech_dir / "manifest.csv"
    if not manifest.is_file():
        raise VoiceosError(f"no speech to play: {manifest} not found (give --speech DIR with a manifest.csv)")
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise VoiceosError(f"no utterances listed in {manifest}")
    return rows


def bench_clips(speech_dir: Path, count: int) -> list[tuple[str, np.ndarray]]:
    """The first ``count`` recordings of five words or more (cycled), as 16 kHz samples: what the bench speaks."""
    rows = manifest_rows(speech_dir)
    sentences = [r for r in rows if len(r["transcript"].split()) >= 5] or rows  # questions-length utterances
    picked = [sentences[i % len(sentences)] for i in range(count)]
    return [(r["path"], read_audio(speech_dir / r["path"], MIC_RATE)) for r in picked]


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


# the baseline: no overlap (the whole reply written, then synthesized, then played) and no speculation
SEQUENTIAL = {
    "runtime": {"sequential": True},
    "tts": {"first_clause_chars": 0},
    "vad": {"speculate_ms": 0},
    "turn": {"end_of_turn": "silence"},
}
# the same pipeline with torch decoding the embedded LM (the decoder before llama.cpp), beside llama.cpp
TORCH_DECODER = {"dialogue": {"decoder": "torch"}}
END_OF_TURN = ("silence", "smart_turn", "words")  # voiceos.turn's strategies
ENGINES = ("whisper", "moonshine")
RUN_NAMES = {"skill_turns": "skill requests"}  # the summary's name of a run, where not its key's words
RATIO_NOTES = {"torch_decoder": " (llama.cpp)"}  # what "configured" is, where a run differs in that only


def variants(config: Any, decoder: str = "torch") -> dict[str, dict[str, dict[str, Any]]]:
    """The runs beside the configured one, each as config overrides: the other ASR engine, each other end-of-turn
    strategy, torch decoding the LM where ``decoder`` (the configured one, see :func:`_decoder`) is llama.cpp, and
    the plain sequential pipeline."""
    from voiceos.turn import strategy_name

    runs: dict[str, dict[str, Any]] = {
        f"asr_{engine}": {"asr": {"engine": engine}} for engine in ENGINES if engine != config.asr.engine
    }
    configured = strategy_name(config.turn)
    for strategy in END_OF_TURN:
        if strategy != configured:
            runs[f"end_of_turn_{strategy}"] = {"turn": {"end_of_turn": strategy}}
    if decoder == "llama_cpp":
        runs["torch_decoder"] = TORCH_DECODER
    runs["sequential"] = SEQUENTIAL
    return runs


def run_bench(
    config_path: str | None,
    utterances: int = 5,
    speech_dir: Path | None = None,
    skill_clips: list[tuple[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Speak the first ``utterances`` recordings of ``speech_dir`` into the daemon's microphone and measure each
    reply; then, on the same daemon, ``skill_clips`` (requests a skill answers), measured apart as ``skill_turns``."""
    from voiceos.audio.virtual import Recorder
    from voiceos.daemon.client import EventFollower
    from voiceos.daemon.harness import VirtualAudioDaemon

    clips = bench_clips(speech_dir or DEFAULT_SPEECH, utterances)
    sets = [clips, *([skill_clips] if skill_clips else [])]
    root = Path(tempfile.mkdtemp(prefix="voiceos-bench-"))  # sound server, daemon log, the clips played
    rig = VirtualAudioDaemon(root, config_path, client_timeout=30)
    finished = False
    clock_offset = time.time() - time.monotonic()  # event times are wall clock; recordings are monotonic
    try:
        rig.require_listening(300.0, "bench")
        events = EventFollower(rig.socket)
        time.sleep(0.3)
        env = rig.server.env
        mic, speaker = Recorder(env, "vmic", MIC_RATE), Recorder(env, "spk.monitor", SPEAKER_RATE)
        time.sleep(0.5)
        marks: list[list] = [[] for _ in sets]
        for which, name, samples in ((i, n, s) for i, clips in enumerate(sets) for n, s in clips):
            rig.client.request("reset")
            mark = events.mark()
            sent_at = time.monotonic()
            rig.server.speak_into_mic(samples)
            ended = events.wait_for("speech_ended", mark, BENCH_EVENT_TIMEOUT_S)
            timings = events.wait_for("timings", mark, BENCH_EVENT_TIMEOUT_S)
            end = events.wait_for(("speaking_ended", "error"), mark, BENCH_EVENT_TIMEOUT_S)
            if end["event"] == "error":  # e.g. the sound server went away: the turn ended unheard
                raise VoiceosError(f"bench: the daemon could not answer {name}: {end['message']}")
            rig.require_listening(300.0, "bench")
            by_model = any(v["ended_turn"] for v in events.since(mark, "turn_verdict"))
            ended_by = "model" if by_model else "silence"
            _settle(events)  # a clip heard as two turns is answered twice: the next clip waits for both
            heard = " | ".join(e["text"] for e in events.since(mark, "transcript"))  # more than one: a split turn
            marks[which].append((name, sent_at, len(samples) / MIC_RATE, ended, timings, ended_by, heard))
        mic_audio, speaker_audio = mic.stop(), speaker.stop()
        result = _analyse(marks[0], mic, mic_audio, speaker, speaker_audio, clock_offset)
        if skill_clips:
            skills = _analyse(marks[1], mic, mic_audio, speaker, speaker_audio, clock_offset)
            result["skill_turns"] = {k: v for k, v in skills.items() if k != "machine"}
            for q in ("p50", "p90"):
                lm_turn, skill_turn = result[f"end_to_first_audio_ms_{q}"], skills[f"end_to_first_audio_ms_{q}"]
                result[f"lm_over_skill_{q}"] = round(lm_turn / skill_turn, 2) if skill_turn else None
        # a lower latency bought with gaps in the sound is no gain: the daemon's counts since its start
        result["audio_faults"] = rig.client.request("status").get("audio_faults", {})
        finished = True
        return result
    finally:
        rig.stop(10.0)
        if finished:  # ~2 MB per run; a failed run keeps its daemon and sound server logs
            shutil.rmtree(root, ignore_errors=True)
        else:
            log.warning("bench: its daemon and sound server logs are kept in %s", root)


def _settle(events, quiet_s: float = 0.8) -> None:
    """Wait until a quiet ``quiet_s`` passes with no new utterance; an utterance heard in it is waited out (its
    reply's timings), so its events are not taken for the next clip's."""
    from voiceos.daemon.client import EventTimeout

    deadline = time.monotonic() + BENCH_EVENT_TIMEOUT_S
    while time.monotonic() < deadline:
        mark = events.mark()
        time.sleep(quiet_s)
        if not events.since(mark, "speech_started"):
            return
        log.warning("bench: the daemon heard one more utterance after its reply; waiting for it")
        try:
            events.wait_for(("timings", "ignored"), mark, 60.0)
        except EventTimeout:  # a sound with no words may end no turn at all
            return


def _analyse(marks, mic, mic_audio, speaker, speaker_audio, clock_offset: float) -> dict[str, Any]:
    per_turn: list[dict[str, Any]] = []
    for name, sent_at, seconds, ended, timings_event, ended_by, heard in marks:
        t = timings_event["timings_ms"]
        start_in_mic = sent_at - mic.started_at
        user_end = last_sound_end(mic_audio, MIC_RATE, start_in_mic, start_in_mic + seconds + 1.0)
        if user_end is None:
            log.warning("bench: %s never reached the microphone", name)
            continue
        user_end_mono = mic.started_at + user_end
        reply = first_sound_start(speaker_audio, SPEAKER_RATE, user_end_mono - speaker.started_at)
        if reply is None:
            log.warning("bench: no reply heard after %s", name)
            continue
        e2e = (speaker.started_at + reply - user_end_mono) * 1000
        endpointing = (ended["t"] - clock_offset - user_end_mono) * 1000
        model_ms = t.get("asr", 0.0) + t.get("tts_first_audio", 0.0)
        per_turn.append(
            {
                "utterance": name,
                "heard": heard,  # the transcript(s) of the turn
                "skill": "skill" in t,  # a skill answered, not the LM
                "turn_ended_by": ended_by,  # the turn model's verdict, or the silence timer
                "end_to_first_audio_ms": round(e2e, 1),
                "endpointing": round(endpointing, 1),
                "asr": round(t.get("asr", 0.0), 1),
                "lm_first_token": round(t.get("lm_first_token", 0.0), 1),
                "first_sentence": round(t.get("first_sentence", 0.0), 1),
                "tts_first_audio": round(t.get("tts_first_audio", 0.0), 1),
                "output_buffering": round(e2e - endpointing - model_ms, 1),
                # end of speech -> the transcript (negative asr_ready: before the end of the turn)
                "asr_wait": round(endpointing + t.get("asr_ready", t.get("asr", 0.0)), 1),
                "asr_speculative": bool(t.get("asr_speculative", 0.0)),  # transcribed during the end-of-turn silence
                "head_start": round(t.get("head_start", 0.0), 1),  # how far the reply had got by the end of the turn
            }
        )
    result: dict[str, Any] = {"utterances": len(per_turn)}
    e2e_values = [turn["end_to_first_audio_ms"] for turn in per_turn]
    result["end_to_first_audio_ms_p50"] = _percentile(e2e_values, 50)
    result["end_to_first_audio_ms_p90"] = _percentile(e2e_values, 90)
    for stage in STAGES:
        values = [turn[stage] for turn in per_turn]
        result[f"{stage}_ms_p50"] = _percentile(values, 50)
        result[f"{stage}_ms_p90"] = _percentile(values, 90)
    for q in (50, 90):
        result[f"asr_wait_ms_p{q}"] = _percentile([turn["asr_wait"] for turn in per_turn], q)
    ends = result["endpointing_ms_p50"] / result["end_to_first_audio_ms_p50"] if per_turn else float("nan")
    result["endpointing_share_p50"] = round(ends, 2)  # of the wait, how much is deciding that the turn is over
    result["turns_ended_by_model"] = sum(turn["turn_ended_by"] == "model" for turn in per_turn)
    result["answered_by_skill"] = sum(turn["skill"] for turn in per_turn)
    result["asr_speculative_share"] = round(sum(t["asr_speculative"] for t in per_turn) / max(1, len(per_turn)), 2)
    result["head_start_ms_p50"] = _percentile([t["head_start"] for t in per_turn], 50)
    result["turns"] = per_turn
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    return result


def main(
    config_path: str | None, utterances: int, speech_dir: str | None, baseline: bool = True, *, as_json: bool = False
) -> int:
    """The streaming pipeline as configured, with requests a skill answers measured apart; then (``baseline``) the
    same with the other ASR engine, each other end-of-turn strategy and (llama.cpp configured) the torch decoder, the
    plain sequential pipeline, what each strategy decides at mid-sentence pauses, and the LM's decoding speed."""
    from voiceos.bench_lm import lm_throughput
    from voiceos.bench_skills import skill_requests
    from voiceos.config import load_config
    from voiceos.lm_server import first_token_through_server
    from voiceos.turn.evaluate import compare_strategies

    speech = Path(speech_dir) if speech_dir else None
    config = load_config(config_path)
    # requests a skill answers ("what time is it") on the same daemon: no LM call, so sooner
    result = run_bench(config_path, utterances, speech, skill_requests(config, utterances))
    result["asr_engine"], result["end_of_turn_strategy"] = config.asr.engine, config.turn.end_of_turn
    if baseline:
        with tempfile.TemporaryDirectory(prefix="voiceos-bench-config-") as tmp:
            for name, overrides in variants(config, _decoder(config)).items():
                other = run_bench(config_with(config_path, overrides, Path(tmp)), utterances, speech)
                result[name] = {k: v for k, v in other.items() if k != "machine"}
                for q in ("p50", "p90"):
                    ours, theirs = result[f"end_to_first_audio_ms_{q}"], other[f"end_to_first_audio_ms_{q}"]
                    result[f"{name}_over_configured_{q}"] = round(theirs / ours, 2) if ours else None
        result["end_of_turn"] = compare_strategies(config, speech or DEFAULT_SPEECH)
        result["lm"] = lm_throughput(config, config_path=config_path)
        result["lm"]["through_server"] = first_token_through_server(config)  # dialogue.backend: openai
    print(json.dumps(result, indent=2) if as_json else summary(result))
    return 0 if result["utterances"] else 1


def _decoder(config: Any) -> str:
    """The decoder the config's dialogue runs with here (``llama_cpp`` or ``torch``; ``openai``: a server)."""
    if config.dialogue.backend != "embedded":
        return config.dialogue.backend
    from voiceos.dialogue.backend import choose_decoder
    from voiceos.models import plan_for

    return choose_decoder(config.dialogue, plan_for(config))[0]


def summary(result: dict[str, Any]) -> str:
    """The figures a person reads first, one per line (``--json`` has everything, per turn included)."""
    lines = [f"utterances: {result['utterances']}"]
    configured = f"configured ({result.get('asr_engine', '?')}, end of turn {result.get('end_of_turn_strategy', '?')})"
    runs = [("", configured, result)] + [
        (key, RUN_NAMES.get(key, key.replace("_", " ")), run) for key, run in result.items() if _is_run(run)
    ]
    for key, name, run in runs:
        p50, p90 = run["end_to_first_audio_ms_p50"], run["end_to_first_audio_ms_p90"]
        stages = "  ".join(f"{stage} {run[f'{stage}_ms_p50']:.0f}" for stage in STAGES)
        lines.append(f"{name}: end of speech -> first reply audio p50 {p50:.0f} ms, p90 {p90:.0f} ms")
        if run.get("head_start_ms_p50"):
            stages += f"  (reply head start {run['head_start_ms_p50']:.0f})"
        if "asr_wait_ms_p50" in run:
            stages += f"  (transcript {run['asr_wait_ms_p50']:.0f} after the end of speech)"
        lines.append(f"  stage p50 (ms): {stages}")
        if "endpointing_share_p50" in run:
            lines.append(
                f"  turns ended by the turn model: {run.get('turns_ended_by_model', 0)} of {run['utterances']}; "
                f"endpointing is {run['endpointing_share_p50']:.0%} of the wait (p50)"
            )
        faults = {fault: count for fault, count in run.get("audio_faults", {}).items() if count}
        lines.append(f"  audio faults: {faults or 'none'}")
        if f"{key}_over_configured_p50" in result:
            lines.append(
                f"  {name} / configured{RATIO_NOTES.get(key, '')}: {result[f'{key}_over_configured_p50']}x at p50, "
                f"{result[f'{key}_over_configured_p90']}x at p90"
            )
    for decided in result.get("end_of_turn", {}).values():
        at_five = decided.get("delay_at_5pct_false_cut_ins_ms")
        lines.append(
            f"end of turn on {decided['mid_sentence_pauses']} mid-sentence pauses: {decided['strategy']}: false "
            f"cut-ins {decided['false_cut_in_rate']:.1%}, finished turns over after {decided['end_delay_ms_p50']} ms"
            + (f"; at 5% false cut-ins: {at_five} ms" if at_five is not None else "")
        )
    if "lm_over_skill_p50" in result:
        lines.append(
            f"LM turns / skill turns: {result['lm_over_skill_p50']}x at p50, {result['lm_over_skill_p90']}x at p90"
        )
    lm = result.get("lm")
    if lm:
        line = (
            f"LM {lm['model']} ({lm['device']}, {lm['dtype']}), decoded by {lm.get('decoder', 'torch')}"
            f"{' with its adapter' if lm.get('adapter') else ''}: {lm['tokens_per_s']} tok/s"
        )
        if lm.get("first_token_ms"):
            line += f", first token {lm['first_token_ms']} ms"
        if lm.get("configured_over_llama_cpp_plain"):
            line += f" ({lm['configured_over_llama_cpp_plain']}x llama.cpp's plain {lm['llama_cpp_tokens_per_s']})"
        others = (
            ("llama_cpp", "llama.cpp"),
            ("llama_cpp_no_adapter", "llama.cpp without the adapter"),
            ("torch", "torch"),
            ("torch_no_adapter", "torch without the adapter"),
            ("model_forward", "through transformers' forward"),
            ("float32_weights", "from float32 weights"),
            ("bfloat16", "bfloat16"),
        )
        for name, label in others:
            if lm.get(name):
                other = lm[name]
                line += f"; {label} {other['tokens_per_s']} tok/s"
                if other.get("first_token_ms"):
                    line += f" (first token {other['first_token_ms']} ms)"
                line += f", same greedy replies {other['same_greedy_replies']}"
        lines.append(line)
        talk = lm.get("conversation")
        if talk:
            lines.append(
                f"LM first token in a conversation (p50 of {talk['turns']} turns, ~{talk['prompt_tokens_median']:.0f}"
                f" prompt tokens): {talk['first_token_ms_reuse_p50']:.0f} ms from the last reply's cache vs "
                f"{talk['first_token_ms_history_prefilled_p50']:.0f} ms prefilling the history "
                f"({talk['history_prefilled_over_reuse']}x), same replies {talk['same_replies']}"
            )
        served = lm.get("through_server")
        if served:
            lines.append(
                f"LM through {served['server']}: first token {served['first_token_ms']} ms, "
                f"{served['tokens_per_s']} tok/s (in process: {lm['first_token_ms']} ms, {lm['tokens_per_s']} tok/s)"
            )
    return "\n".join(lines)


def _is_run(value: Any) -> bool:
    return isinstance(value, dict) and "end_to_first_audio_ms_p50" in value
