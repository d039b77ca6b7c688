"""``voiceos chat``: a text conversation through the same pipeline, persona and memory as the daemon.

Interactive by default (a prompt; each sentence of the reply printed as it is said, so the screen shows exactly what
the assistant says; ``--speak`` also speaks it). Timers and reminders ring in the terminal while it runs.
``--jsonl`` is the scripting contract: stdin carries one JSON object a line, ``{"text": ...}`` (a user turn) or
``{"reset": true}`` (a new conversation); stdout gets one JSON object per input line, in order (so nothing rings
there: a timer is set, listed and cancelled, never announced). A bad line gets ``{"error": ...}`` on its line and the
rest go on. The models load once per process. ``--now`` fixes the clock the skills read.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from voiceos.clock import FixedClock
from voiceos.errors import VoiceosError
from voiceos.pipeline import Pipeline, TurnResult, rounded_timings

AudioSink = Callable[[Any], None]
HELP = "type what you would say; /reset starts a new conversation, /memory lists what I know about you, /quit ends"


def turn_json(turn: TurnResult) -> dict[str, Any]:
    """One ``--jsonl`` output line for a turn."""
    return {
        "input": turn.input,
        "reply": turn.reply,
        "words": len(turn.reply.split()),
        "user_emotion": turn.user_emotion,
        "reply_emotion": turn.reply_emotion,
        "skill": turn.skill,
        "dropped": turn.dropped,  # sentences of the LM's a guard kept from being said (name, invented_now)
        "learnt": [fact.as_json() for fact in turn.learnt],
        "audio_s": round(turn.audio_seconds, 3),
        "timings_ms": rounded_timings(turn.timings_ms),
    }


def answer_line(pipeline: Pipeline, line: str, on_audio: AudioSink | None = None) -> dict[str, Any] | None:
    """The output object for one ``--jsonl`` input line (None for a blank line); never raises for bad input."""
    if not line.strip():
        return None
    try:
        request = json.loads(line)
    except ValueError as err:
        return {"error": f"not a JSON object: {err}"}
    if not isinstance(request, dict):
        return {"error": f"expected a JSON object with 'text' or 'reset', got {type(request).__name__}"}
    unknown = sorted(set(request) - {"text", "reset", "id"})
    if unknown:
        return _with_id(request, {"error": f"unknown key {unknown[0]!r} (expected 'text' or 'reset')"})
    if request.get("reset") is True:
        forgotten = pipeline.reset(forget_facts=False)
        return _with_id(request, {"reset": True, "forgotten_facts": forgotten})
    text = request.get("text")
    if not isinstance(text, str):
        return _with_id(request, {"error": "'text' must be a string (or send {\"reset\": true})"})
    try:
        turn = pipeline.reply(text, on_audio=on_audio)
    except VoiceosError as err:
        return _with_id(request, {"error": str(err)})
    return _with_id(request, turn_json(turn))


def _with_id(request: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    return {"id": request["id"], **reply} if "id" in request else reply


def run_jsonl(pipeline: Pipeline, lines: IO[str], out: IO[str], on_audio: AudioSink | None = None) -> int:
    for line in lines:
        reply = answer_line(pipeline, line, on_audio)
        if reply is not None:
            out.write(json.dumps(reply, ensure_ascii=False) + "\n")
            out.flush()
    return 0


def fixed_clock(when: str) -> FixedClock:
    """``--now``: a local time like 2026-12-07T14:10 (or with a UTC offset)."""
    try:
        return FixedClock(datetime.fromisoformat(when))
    except ValueError:
        raise VoiceosError(f"--now {when!r}: give a local time like 2026-12-07T14:10") from None


class TerminalAlarms:
    """Rings chat's timers and reminders: prints the notice (and speaks it with --speak) when one is due."""

    def __init__(self, pipeline: Pipeline, lock: threading.Lock, on_audio: AudioSink | None, name: str) -> None:
        self.pipeline, self.lock, self.on_audio, self.name = pipeline, lock, on_audio, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="voiceos-chat-alarms", daemon=True)

    def __enter__(self) -> TerminalAlarms:
        if self.pipeline.timers is not None and self.pipeline.reminders is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        timers, reminders = self.pipeline.timers, self.pipeline.reminders
        assert timers is not None and reminders is not None
        while not self._stop.wait(0.25):
            notices = [t.notice() for t in timers.pop_due()] + [r.notice() for r in reminders.pop_due()]
            if not notices:
                continue
            notice = " ".join(notices)
            print(f"\n{self.name}> (ding) {notice}\nyou> ", end="", flush=True)
            if self.on_audio is not None:
                with self.lock:
                    self.pipeline.announce(notice, on_audio=self.on_audio)


def run_interactive(pipeline: Pipeline, on_audio: AudioSink | None = None) -> int:
    name = pipeline.config.persona.name
    print(f"voiceos chat with {name}: {HELP}", file=sys.stderr)
    lock = threading.Lock()  # one reply or one notice at a time
    with TerminalAlarms(pipeline, lock, on_audio, name.lower()):
        return _converse(pipeline, on_audio, lock)


def _converse(pipeline: Pipeline, on_audio: AudioSink | None, lock: threading.Lock) -> int:
    name = pipeline.config.persona.name
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        command = text.strip().lower()
        if not command:
            continue
        if command in ("/quit", "/exit"):
            return 0
        if command == "/reset":
            pipeline.reset(forget_facts=False)
            print("(a new conversation)", file=sys.stderr)
            continue
        if command == "/memory":
            facts = pipeline.memory.facts
            for number, fact in enumerate(facts, 1):
                print(f"  {number}. {fact.text}")
            if not facts:
                print("  (nothing yet)")
            continue
        print(f"{name.lower()}>", end="", flush=True)
        try:
            with lock:  # each sentence shown as it is said: what is on the screen is what the assistant says
                turn = pipeline.reply(text, on_audio=on_audio, on_sentence=lambda s: print(f" {s}", end="", flush=True))
        except VoiceosError as err:
            print(f"\nvoiceos: error: {err}", file=sys.stderr)
            continue
        print("" if turn.reply or turn.skill else " (nothing)")
