"""What the control socket's clients may ask the running daemon (voiceos.daemon.control.ControlHandler): the turns
themselves are the assistant's (say, listen, reset); the rest reads or changes its state (status, memory, reminders,
events)."""

from __future__ import annotations

import time
from typing import Any

from voiceos import __version__
from voiceos.alarms.reminders import reminders_command
from voiceos.daemon.assistant import Assistant
from voiceos.daemon.bus import Subscription
from voiceos.memory.store import memory_command


class ControlCommands:
    """The control commands of ``assistant``."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    async def say(self, text: str) -> dict[str, Any]:
        return await self.assistant.say(text)

    async def listen(self, path: str) -> dict[str, Any]:
        return await self.assistant.listen(path)

    async def interrupt(self) -> dict[str, Any]:
        return {"interrupted": self.assistant.interrupt_turn("interrupt command")}

    async def reset(self) -> dict[str, Any]:
        return await self.assistant.reset()

    async def memory(self, remove: object = None) -> dict[str, Any]:
        return memory_command(self.assistant.pipeline.memory, remove)

    async def reminders(self, cancel: object = None) -> dict[str, Any]:
        """The reminders, after cancelling number ``cancel`` (as listed) if given."""
        return reminders_command(self.assistant.pipeline.reminders, cancel)

    async def mute(self, muted: bool) -> dict[str, Any]:
        """Close the microphone stream (nothing is heard, its name neither) or open it again."""
        was = self.assistant.audio.muted
        self.assistant.mute(muted)
        return {"muted": muted, "changed": was != muted}

    def subscribe(self) -> Subscription:
        return self.assistant.bus.subscribe()

    def status(self) -> dict[str, Any]:
        a = self.assistant
        p = a.pipeline
        return {
            "state": a.state,
            "detail": a.state_detail,
            "version": __version__,
            "uptime_s": round(time.monotonic() - a.started_at, 1),
            "devices": {
                "input": a.audio.microphone.name if a.audio.microphone else None,
                "output": a.audio.output_name(),
                "error": a.audio.error or None,
                "lost": a.audio.lost,
            },
            "models": {
                "asr": p.config.asr.model,
                "lm": getattr(p.lm, "name", p.config.dialogue.model),
                "voice": p.voice.name if p.voice else p.config.tts.voice,
                "device": p.plan.torch_device if hasattr(p.plan, "torch_device") else str(p.plan),
            },
            "turns": a.turns,
            "interruptions": a.interruptions,
            "history_messages": len(p.history),
            "barge_in": a.config.audio.barge_in,
            "end_of_turn": a.audio.end_of_turn.name,
            "muted": a.audio.muted,
            "wake": a.turn_start.name,  # name or always
            "how_to_talk": a.turn_start.how_to_talk(),
            "echo": a.audio.echo.mode,  # aec, gate (livekit missing) or off
            **self._alarms(),
            **{name: section() for name, section in a.extra_status.items()},
            "audio_faults": a.audio.faults(),
        }

    def _alarms(self) -> dict[str, Any]:
        """The running timers, the reminders, and whether one rings now."""
        p = self.assistant.pipeline
        if p.timers is None or p.reminders is None:
            return {}
        now = p.clock.monotonic()
        return {
            "timers": [timer.as_json(now) for timer in p.timers.timers],
            "reminders": [reminder.as_json() for reminder in p.reminders.reminders],
            "ringing": self.assistant.alarms is not None and self.assistant.alarms.ringing,
        }
