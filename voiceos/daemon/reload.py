"""SIGHUP (``systemctl --user reload voiceos``): re-read the config file and apply what can change while running.

What changes live, keeping the conversation: the endpointer (``vad.*`` but its sample rate; a new endpointer drops
an utterance being spoken at that moment), the echo stage (``echo.*``; it learns the echo path again), barge-in and
the reconnect backoff, the persona and decoding options of the dialogue LM, the emotion policy, who is answered
(``wake.*``), how often an alarm rings, the voice (a profile with the same sample rate: one voice model is loaded
next to the old one, then swapped in) and the input limits.
Everything else (models, devices, dtype, runtime...) is logged as needing a restart and keeps its running value.

A config that does not load (bad YAML, unknown key, out-of-range value, a voice that cannot be loaded) is refused
as a whole: the daemon goes on with the config it had, and the log and STATUS= say why.

systemd 252 has no Type=notify-reload, so the unit reloads with ``ExecReload=kill -HUP``; the daemon still sends
RELOADING=1 (with MONOTONIC_USEC, which notify-reload requires) and READY=1 when done, as that protocol expects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from voiceos.config import Config, load_config
from voiceos.daemon.sdnotify import Notifier
from voiceos.errors import VoiceosError

log = logging.getLogger(__name__)

# Dotted keys (or section prefixes ending in ".") that a running daemon applies; anything else needs a restart.
LIVE_KEYS = (
    "audio.barge_in",
    "audio.barge_in_min_ms",
    "audio.reconnect_max_s",
    "echo.",
    "vad.aggressiveness",
    "vad.frame_ms",
    "vad.pre_roll_ms",
    "vad.hangover_ms",
    "vad.end_level_db",
    "vad.start_ms",
    "vad.min_speech_ms",
    "vad.max_utterance_s",
    "dialogue.system_prompt",
    "dialogue.max_new_tokens",
    "dialogue.max_sentences",
    "dialogue.max_prompt_tokens",
    "dialogue.temperature",
    "dialogue.top_p",
    "dialogue.top_k",
    "dialogue.repetition_penalty",
    "dialogue.seed",
    "emotion.min_confidence",
    "emotion.context_note",
    "emotion.policy.",
    "persona.",
    "tts.voice",
    "tts.voices_dir",
    "limits.",
    "wake.",
    "skills.ring_times",
    "skills.ring_interval_s",
)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two configs (nested option dataclasses are walked)."""
    keys: list[str] = []
    for f in dataclasses.fields(old):
        if not f.compare:
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a) and type(a) is type(b):
            keys += changed_keys(a, b, f"{prefix}{f.name}.")
        elif a != b:
            keys.append(prefix + f.name)
    return keys


def is_live(key: str) -> bool:
    return any(key == live or (live.endswith(".") and key.startswith(live)) for live in LIVE_KEYS)


def with_value(config: Any, key: str, value: Any) -> Any:
    """A copy of a (frozen, nested) config with one dotted key set."""
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(config, **{head: value})
    return dataclasses.replace(config, **{head: with_value(getattr(config, head), rest, value)})


def get_value(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def merge(old: Config, new: Config, restart: list[str]) -> Config:
    """``new`` with the keys that need a restart kept at their running (``old``) values."""
    merged = new
    for key in restart:
        merged = with_value(merged, key, get_value(old, key))
    return merged


class Reloader:
    """Handles SIGHUP for the daemon; its :meth:`status` is the ``config`` section of the daemon's status."""

    def __init__(self, config: Config, notifier: Notifier) -> None:
        self.path = config.source
        self.notifier = notifier
        self.assistant: Any = None  # set by attach() once the daemon is ready
        self.reloads = 0  # applied (a file with no change counts too)
        self.refused = 0
        self.last: dict[str, Any] | None = None
        self._task: asyncio.Task | None = None
        self._again = False
        self._pending = False

    def attach(self, assistant: Any) -> None:
        """The daemon is ready: reload from now on (and now, if SIGHUP came while it was starting)."""
        self.assistant = assistant
        if self._pending:
            self._pending = False
            self.request()

    def request(self) -> None:
        """The SIGHUP handler (on the event loop). Signals during a reload coalesce into one more reload."""
        if self.assistant is None:
            log.info("SIGHUP while starting: the config is re-read once the daemon is ready")
            self._pending = True
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="config-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> dict[str, Any]:
        """Re-read the file, apply what can change live; returns what happened (also kept for :meth:`status`)."""
        assistant = self.assistant
        self.notifier.reloading()
        started = time.monotonic()
        try:
            result = await self._apply(assistant)
        except Exception as err:  # READY=1 must follow RELOADING=1 whatever happens, or systemd waits for it
            if not isinstance(err, VoiceosError):
                log.exception("config reload failed")
            reason = str(err) if isinstance(err, VoiceosError) else f"internal error: {type(err).__name__}: {err}"
            self.refused += 1
            result = {"ok": False, "error": reason, "applied": [], "needs_restart": []}
            log.error("config reload refused, the daemon keeps its running config: %s", reason)
            status = f"{assistant.state}; config reload refused: {reason}"
        else:
            self.reloads += 1
            status = f"{assistant.state}; config reloaded"
            if result["needs_restart"]:
                status += f" ({', '.join(result['needs_restart'])} need a restart)"
        result["at"] = time.time()
        result["seconds"] = round(time.monotonic() - started, 3)
        self.last = result
        self.notifier.ready(status)
        return result

    async def _apply(self, assistant: Any) -> dict[str, Any]:
        if self.path.startswith("<"):  # <defaults>: no file was found at start-up
            raise VoiceosError("the daemon started without a config file: there is nothing to re-read")
        loop = asyncio.get_running_loop()
        old: Config = assistant.config
        new = await loop.run_in_executor(None, load_config, self.path)
        changed = changed_keys(old, new)
        live = [key for key in changed if is_live(key)]
        restart = [key for key in changed if not is_live(key)]
        pipeline = assistant.pipeline
        voice = engine = None
        if {"tts.voice", "tts.voices_dir"} & set(live):
            voice, engine = await loop.run_in_executor(None, _load_voice, new, pipeline)
            if engine is None:  # another sample rate: the audio streams and the echo reference are built for one
                restart += [key for key in live if key.startswith("tts.")]
                live = [key for key in live if not key.startswith("tts.")]
        effective = merge(old, new, restart)
        # Commit: nothing below can fail, so the daemon never runs half of a new config.
        if voice is not None and engine is not None:
            pipeline.voice, pipeline.tts = voice, engine  # a reply in progress switches at its next sentence
        dialogue = {key.split(".", 1)[1] for key in live if key.startswith("dialogue.")}
        if dialogue and pipeline.lm is not None:
            pipeline.lm.options = dataclasses.replace(
                pipeline.lm.options, **{name: getattr(effective.dialogue, name) for name in dialogue}
            )
        assistant.use_config(
            effective,
            new_vad=any(key.startswith("vad.") for key in live),
            new_echo=any(key.startswith("echo.") for key in live),
        )
        if live:
            log.info("config reloaded from %s: applied %s", self.path, ", ".join(live))
        else:
            log.info("config reloaded from %s: nothing to apply", self.path)
        if restart:
            log.warning(
                "config reload: %s changed, kept at the running value until a restart (systemctl --user restart)",
                ", ".join(restart),
            )
        return {"ok": True, "error": None, "applied": live, "needs_restart": restart}

    def status(self) -> dict[str, Any]:
        """What the control socket's ``status`` shows under ``config``: the file, reloads, and the live values."""
        assistant = self.assistant
        data: dict[str, Any] = {"source": self.path, "reloads": self.reloads, "refused": self.refused}
        data["last_reload"] = self.last
        if assistant is not None:
            data["live"] = live_values(assistant)
        return data


def live_values(assistant: Any) -> dict[str, Any]:
    """The reloadable settings as the running objects hold them (not as the file says)."""
    config: Config = assistant.config
    lm = assistant.pipeline.lm
    decoding = ("system_prompt", "max_new_tokens", "max_prompt_tokens", "temperature", "top_p", "top_k", "seed")
    return {
        "vad": dataclasses.asdict(assistant.vad_options),
        "echo": dataclasses.asdict(assistant.audio.echo.options),
        "audio": {
            "barge_in": config.audio.barge_in,
            "barge_in_min_ms": config.audio.barge_in_min_ms,
            "reconnect_max_s": config.audio.reconnect_max_s,
        },
        "dialogue": {name: getattr(lm.options, name) for name in decoding} if lm is not None else {},
        "emotion": {"min_confidence": config.emotion.min_confidence, **dataclasses.asdict(config.emotion.policy)},
        "voice": assistant.pipeline.voice.name if assistant.pipeline.voice is not None else None,
    }


def _load_voice(config: Config, pipeline: Any) -> tuple[Any, Any]:
    """The new voice profile and its engine, warmed; the engine is None when its sample rate differs."""
    from voiceos.tts import load_engine
    from voiceos.tts.voices import load_voice

    voice = load_voice(config.tts.voice, config.tts.voices_dir)
    engine = load_engine(voice, pipeline.plan)
    if pipeline.tts is not None and engine.sample_rate != pipeline.tts.sample_rate:
        log.warning(
            "voice %s speaks at %d Hz, the running one at %d Hz: it needs a restart",
            voice.name,
            engine.sample_rate,
            pipeline.tts.sample_rate,
        )
        return voice, None
    engine.warm()
    return voice, engine
