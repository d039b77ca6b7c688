"""``voiceos chat``: a text conversation through the same pipeline, persona and memory as the daemon.

Interactive by default (a prompt; the reply printed as it is written; ``--speak`` also speaks it). ``--jsonl`` is
the scripting contract: stdin carries one JSON object a line, ``{"text": ...}`` (a user turn) or ``{"reset": true}``
(a new conversation); stdout gets one JSON object per input line, in order. A bad line gets ``{"error": ...}`` on
its line and the rest go on. The models load once per process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import IO, Any

from voiceos.errors import VoiceosError
from voiceos.pipeline import Pipeline, TurnResult

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
        "learnt": [fact.as_json() for fact in turn.learnt],
        "audio_s": round(turn.audio_seconds, 3),
        "timings_ms": {k: round(v, 1) for k, v in turn.timings_ms.items()},
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


def run_interactive(pipeline: Pipeline, on_audio: AudioSink | None = None) -> int:
    name = pipeline.config.persona.name
    print(f"voiceos chat with {name}: {HELP}", file=sys.stderr)
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
        print(f"{name.lower()}> ", end="", flush=True)
        try:
            pipeline.reply(text, on_audio=on_audio, on_delta=lambda delta: print(delta, end="", flush=True))
        except VoiceosError as err:
            print(f"\nvoiceos: error: {err}", file=sys.stderr)
            continue
        print()
