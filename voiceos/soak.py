"""Soak run: the real daemon on virtual devices, fed real speech and silence in turns for minutes on end.

Shared by ``benchmarks/soak.py`` (30 minutes by default) and ``tests/test_soak.py`` (2 minutes). Each turn speaks
one recording into the virtual microphone, waits (bounded) until the reply has been played, then feeds silence.
It watches the daemon from outside: its PID, ``/proc/PID`` (resident memory, open fds, threads), the events on the
control socket, the speaker monitor (was a reply heard?), the audio fault counters of ``status`` and its log.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from voiceos.audio.files import read_audio
from voiceos.bench import DEFAULT_SPEECH, MIC_RATE, loud_windows, manifest_rows
from voiceos.daemon.client import EventFollower
from voiceos.daemon.harness import VirtualAudioDaemon
from voiceos.errors import VoiceosError

log = logging.getLogger(__name__)

MONITOR_RATE = 8000  # the speaker monitor only needs loudness
HEARD_S = 0.3  # a reply counts as heard with at least this much sound on the speaker ...
HEARD_SHARE = 0.2  # ... or, for a short reply ("Five?" is ~0.25 s of voice), this share of the audio it played
RSS_WINDOW = 5  # turns: one idle RSS sample swings by ~10% as the allocator keeps or returns a reply's peak
LOG_PROBLEM = re.compile(r" (ERROR|CRITICAL) |^Traceback ")
ALSA_UNDERRUN = "underrun occurred"  # alsa-lib's own message on the daemon's stderr


@dataclass(frozen=True)
class Criteria:
    """What a soak run must meet (issue #7)."""

    max_rss_growth_pct: float = 10.0
    fd_slack: int = 2  # open fds may end this many above the post-warm-up count
    thread_slack: int = 2
    # input overflows + microphone blocks dropped + output underflows while a reply plays, per minute of soak
    max_audio_xruns_per_minute: float = 1.0


def proc_stats(pid: int) -> dict[str, float]:
    """Resident memory (MB), open file descriptors and threads of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
    }


class SpeakerMonitor:
    """``parec`` on the speaker's monitor; counts loud 20 ms windows without keeping the audio."""

    def __init__(self, env: dict[str, str]) -> None:
        self.loud_windows = 0
        cmd = ["parec", "-d", "spk.monitor", "--raw", "--format=float32le", f"--rate={MONITOR_RATE}"]
        self._proc = subprocess.Popen([*cmd, "--channels=1", "--latency-msec=20"], stdout=subprocess.PIPE, env=env)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert isinstance(self._proc.stdout, io.BufferedReader)  # stdout=PIPE with the default buffering
        window = MONITOR_RATE // 50 * 4
        pending = b""
        while chunk := self._proc.stdout.read1(65536):
            pending += chunk
            n = len(pending) // window
            if n:
                samples = np.frombuffer(pending[: n * window], dtype="<f4")
                self.loud_windows += int(loud_windows(samples, MONITOR_RATE).sum())
                pending = pending[n * window :]

    @property
    def loud_seconds(self) -> float:
        return self.loud_windows / 50

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)


SOAK_EVENTS = frozenset({"speech_ended", "transcript", "speaking_ended", "state", "error"})


def load_clips(speech_dir: Path) -> list[tuple[str, np.ndarray]]:
    """Every recording a ``manifest.csv`` lists, as 16 kHz mono float32."""
    return [(Path(r["path"]).name, read_audio(speech_dir / r["path"], MIC_RATE)) for r in manifest_rows(speech_dir)]


def heard_enough(heard_s: float, played_s: float) -> bool:
    """Did the speaker carry a reply the daemon says it played for ``played_s``? Loud 20 ms windows count; a short
    reply's pauses and soft ends leave only part of its length loud."""
    return heard_s >= min(HEARD_S, HEARD_SHARE * played_s) and heard_s > 0


class Soak(VirtualAudioDaemon):
    """One daemon on one private sound server, driven turn by turn; use :func:`run_soak`."""

    def __init__(self, root: Path, env: dict[str, str] | None, config_path: str | None) -> None:
        super().__init__(root, config_path, env)
        self.events: EventFollower | None = None
        self.speaker: SpeakerMonitor | None = None

    def start(self, load_timeout: float = 300.0) -> None:
        self.require_listening(load_timeout, "soak")
        self.events = EventFollower(self.socket, keep=SOAK_EVENTS)
        self.speaker = SpeakerMonitor(self.server.env)
        time.sleep(0.5)  # the subscription and the recorder are in place

    def feed(self, path: Path) -> None:
        self.server.speak_into_mic(path)

    def reply_played(self, mark: int) -> dict[str, Any]:
        """The ``speaking_ended`` event of the reply to the utterance fed after ``mark`` (empty if none)."""
        assert self.events is not None
        ended = [e for e in self.events.since(mark, "speaking_ended") if not e["interrupted"]]
        return ended[0] if ended else {}

    def await_reply(self, mark: int, reply_timeout: float) -> str:
        """Wait until the utterance fed after ``mark`` is answered; else say why not (bounded)."""
        assert self.events is not None
        fed_done = time.monotonic()
        deadline = fed_done + reply_timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return "daemon_exited"
            if any(not e["interrupted"] for e in self.events.since(mark, "speaking_ended")):
                return "answered"
            ended = self.events.since(mark, "speech_ended")
            if not ended and time.monotonic() > fed_done + 15.0:
                return "no_speech_detected"
            states = self.events.since(mark, "state")
            if ended and states and states[-1]["state"] == "listening":
                quiet_since = max(fed_done, states[-1]["arrived"])
                if states[-1]["arrived"] > ended[-1]["arrived"] and time.monotonic() - quiet_since > 5.0:
                    return "no_reply"
            self.events.wait(0.2)
        return "timeout"

    def turn(self, name: str, clip: Path, reply_timeout: float) -> dict[str, Any]:
        """Speak one recording, wait for the reply to be played and the daemon to listen again; what happened."""
        assert self.events is not None and self.speaker is not None
        mark, heard_before, started = self.events.mark(), self.speaker.loud_seconds, time.monotonic()
        self.feed(clip)
        outcome = self.await_reply(mark, reply_timeout)
        self.wait_listening(30.0)
        time.sleep(0.3)  # the sound server's buffer reaches the monitor
        heard = self.speaker.loud_seconds - heard_before
        played = self.reply_played(mark)
        turn: dict[str, Any] = {"clip": name, "outcome": outcome, "heard_s": round(heard, 2)}
        turn["reply"], turn["reply_audio_s"] = played.get("spoken_text", ""), played.get("audio_s", 0.0)
        turn["answered"] = outcome == "answered" and heard_enough(heard, turn["reply_audio_s"])
        turn["seconds"] = round(time.monotonic() - started, 1)
        if self.alive():
            turn.update(proc_stats(self.pid))
            turn["history_messages"] = self.client.request("status")["history_messages"]
        return turn

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.speaker is not None:
            self.speaker.stop()
        return super().stop(timeout)


def run_soak(
    minutes: float = 30.0,
    *,
    silence_s: float = 3.0,
    warmup_turns: int = 3,
    reply_timeout_s: float = 120.0,
    speech_dir: Path | None = None,
    config_path: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Feed ``minutes`` of speech/silence turns (at least ``warmup_turns`` + 2) to a fresh daemon; the figures.

    The baseline for memory, fds and threads is taken once ``warmup_turns`` turns are done, in the same idle
    (listening) state as the final sample. ``env`` adds to the daemon's environment (e.g. XDG_CACHE_HOME).
    """
    clips = load_clips(speech_dir or DEFAULT_SPEECH)
    root = Path(tempfile.mkdtemp(prefix="voiceos-soak-"))
    files = []
    for i, (_, samples) in enumerate(clips):
        files.append(root / f"clip{i}.wav")
        sf.write(files[-1], samples, MIC_RATE, subtype="PCM_16")
    silence = root / "silence.wav"
    sf.write(silence, np.zeros(int(silence_s * MIC_RATE), dtype=np.float32), MIC_RATE, subtype="PCM_16")

    soak = Soak(root, env, config_path)
    turns: list[dict[str, Any]] = []
    baseline: dict[str, float] | None = None
    interrupted = False
    try:
        soak.start()
        started = time.monotonic()
        end_at = started + minutes * 60
        try:
            while time.monotonic() < end_at or len(turns) < warmup_turns + 2:
                if turns:
                    soak.feed(silence)
                index = len(turns) % len(clips)
                turns.append(soak.turn(clips[index][0], files[index], reply_timeout_s))
                log.info("turn %d: %s", len(turns), turns[-1])
                if not soak.alive():
                    break
                if len(turns) == warmup_turns:
                    baseline = {k: turns[-1][k] for k in ("rss_mb", "fds", "threads")}
        except KeyboardInterrupt:  # Ctrl+C: report what was measured so far; the turn cut short is not counted
            interrupted = True
        elapsed = time.monotonic() - started
        alive, status = soak.alive(), {}
        with contextlib.suppress(VoiceosError):
            status = soak.client.request("status") if alive else {}
    finally:
        exit_status = soak.stop()
        for path in [*files, silence]:
            path.unlink(missing_ok=True)
    result = _report(turns, baseline, warmup_turns, soak, status, alive, exit_status, minutes, elapsed, silence_s)
    result["stopped_early"] = interrupted
    return result


def _report(
    turns: list[dict[str, Any]],
    baseline: dict[str, float] | None,
    warmup_turns: int,
    soak: Soak,
    status: dict[str, Any],
    alive: bool,
    exit_status: int | None,
    minutes: float,
    elapsed: float,
    silence_s: float,
) -> dict[str, Any]:
    sampled = [t for t in turns if "rss_mb" in t]
    end = sampled[-1] if sampled else {}
    result: dict[str, Any] = {
        "minutes_planned": minutes,
        "minutes_run": round(elapsed / 60, 1),
        "seconds_run": round(elapsed, 1),
        "silence_s": silence_s,
        "utterances_fed": len(turns),
        "utterances_answered": sum(t["answered"] for t in turns),
        "replies_on_speaker_events": sum(t["outcome"] == "answered" for t in turns),
        "replies_heard_on_speaker": sum(heard_enough(t["heard_s"], t.get("reply_audio_s", 0.0)) for t in turns),
        "reply_audio_s_p50": _median([t["reply_audio_s"] for t in turns if t.get("reply_audio_s")]),
        "reply_words_p50": _median([len(t["reply"].split()) for t in turns if t.get("reply")]),
        "unanswered": [{"turn": i + 1, **t} for i, t in enumerate(turns) if not t["answered"]],
        "pid": soak.pid,
        "daemon_restarts": 0 if alive else 1,  # the same process throughout, or it died
        "daemon_uptime_s": status.get("uptime_s"),
        "exit_status_on_sigterm": exit_status,
        "warmup_turns": warmup_turns,
    }
    for key in ("rss_mb", "fds", "threads"):
        values = [t[key] for t in sampled[warmup_turns - 1 :]]
        result[key] = {
            "start": baseline[key] if baseline else None,
            "end": end.get(key),
            "max": max(values) if values else None,
            "first_turn": sampled[0][key] if sampled else None,
        }
    result["rss_mb"].update(_rss_growth([t["rss_mb"] for t in sampled], warmup_turns))
    result["audio_faults"] = status.get("audio_faults", {})
    result["audio_lost"] = status.get("devices", {}).get("lost")  # the microphone stopped: devices reopened
    lines = soak.log_path.read_text(errors="replace").splitlines()
    problems = [line for line in lines if LOG_PROBLEM.search(line)]
    result["log"] = {
        "path": str(soak.log_path),
        "errors": len(problems),
        "warnings": sum(" WARNING " in line for line in lines),
        "alsa_underrun_lines": sum(ALSA_UNDERRUN in line for line in lines),
        "first_errors": problems[:5],
    }
    seconds = [t["seconds"] for t in turns]
    result["turn_seconds_p50"] = round(float(np.median(seconds)), 1) if seconds else None
    result["rss_series_mb"] = [t["rss_mb"] for t in sampled]
    result["turns"] = turns
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    return result


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 2) if values else None


def _growth(before: float | None, after: float | None) -> float | None:
    return round((after / before - 1) * 100, 2) if before and after else None


def _rss_growth(series: list[float], warmup_turns: int) -> dict[str, float | None]:
    """Growth from the median of the first RSS_WINDOW samples after warm-up to the median of the last ones."""
    after_warmup = series[warmup_turns - 1 :]
    if not after_warmup:
        return {"start_median": None, "end_median": None, "growth_pct": None, "growth_second_half_pct": None}
    start = float(np.median(after_warmup[:RSS_WINDOW]))
    end = float(np.median(after_warmup[-RSS_WINDOW:]))
    half = after_warmup[len(after_warmup) // 2 :]  # a leak goes on growing; a warm-up settles
    return {
        "start_median": round(start, 1),
        "end_median": round(end, 1),
        "growth_pct": _growth(start, end),
        "growth_single_samples_pct": _growth(after_warmup[0], after_warmup[-1]),
        "growth_second_half_pct": _growth(float(np.median(half[:RSS_WINDOW])), end),
    }


def failures(result: dict[str, Any], criteria: Criteria = Criteria()) -> list[str]:
    """The criteria a soak result misses, each as a sentence; empty when it passes."""
    out = []
    fed, answered = result["utterances_fed"], result["utterances_answered"]
    if answered != fed:
        out.append(f"{fed - answered} of {fed} utterances were not answered")
    if result["daemon_restarts"]:
        out.append("the daemon died during the run")
    if result["exit_status_on_sigterm"] != 0:
        out.append(f"the daemon exited with status {result['exit_status_on_sigterm']} on SIGTERM")
    growth = result["rss_mb"]["growth_pct"]
    if growth is None or growth >= criteria.max_rss_growth_pct:
        out.append(f"resident memory grew {growth}% after warm-up (limit {criteria.max_rss_growth_pct}%)")
    for key, slack in (("fds", criteria.fd_slack), ("threads", criteria.thread_slack)):
        start, end = result[key]["start"], result[key]["end"]
        if start is None or end is None or end > start + slack:
            out.append(f"{key}: {start} after warm-up, {end} at the end (slack {slack})")
    faults = result["audio_faults"]
    xruns = sum(faults.get(k, 0) for k in ("input_overflows", "input_dropped_blocks", "output_underflows_in_reply"))
    limit = max(1, int(criteria.max_audio_xruns_per_minute * result["minutes_run"]))
    if not faults or xruns > limit:
        out.append(f"{xruns} audio over/underflows (limit {limit} in {result['minutes_run']} min): {faults}")
    if result["log"]["errors"]:
        out.append(f"{result['log']['errors']} errors in the daemon log, first: {result['log']['first_errors'][0]}")
    return out


def summary(result: dict[str, Any]) -> str:
    """A few human lines."""
    rss, fds, threads, faults = result["rss_mb"], result["fds"], result["threads"], result["audio_faults"]
    return "\n".join(
        [
            f"soak: {result['minutes_run']} min, {result['utterances_answered']}/{result['utterances_fed']} "
            f"utterances answered, daemon PID {result['pid']}, restarts {result['daemon_restarts']}",
            f"replies: median {result.get('reply_audio_s_p50')} s of audio, {result.get('reply_words_p50')} words",
            f"RSS (median of {RSS_WINDOW} turns) {rss['start_median']} -> {rss['end_median']} MB after warm-up "
            f"({rss['growth_pct']}%; second half {rss['growth_second_half_pct']}%), single samples {rss['start']} "
            f"-> {rss['end']} MB, max {rss['max']} MB",
            f"fds {fds['start']} -> {fds['end']}, threads {threads['start']} -> {threads['end']}",
            "audio faults: " + ", ".join(f"{k} {v}" for k, v in faults.items()),
            f"devices lost and reopened {result['audio_lost']} times; daemon log: {result['log']['errors']} errors, "
            f"{result['log']['warnings']} warnings",
        ]
    )


def remove_logs(result: dict[str, Any]) -> None:
    """Delete the run's directory (daemon and sound server logs)."""
    shutil.rmtree(Path(result["log"]["path"]).parent, ignore_errors=True)
