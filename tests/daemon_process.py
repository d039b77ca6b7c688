"""`voiceos run` as a real subprocess on the session's PulseAudio server, with an event recorder on its socket."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from voiceos.daemon.client import ControlClient, EventFollower
from voiceos.daemon.harness import DaemonProcess as _Daemon
from voiceos.errors import VoiceosError


class DaemonProcess(_Daemon):
    """The daemon, logging to ``log_dir/daemon.log``; test failures carry the log's tail."""

    def __init__(self, env: dict[str, str], log_dir: Path, config: Path | None = None) -> None:
        super().__init__(env, log_dir / "daemon.log", config, client_timeout=300)
        self.client = ControlClient(self.socket, timeout=300)
        self.events: EventFollower | None = None

    def wait_until(self, state: str, timeout: float = 180.0) -> dict[str, Any]:
        try:
            return self.require_state(state, timeout, "test")
        except VoiceosError as err:
            raise AssertionError(str(err)) from None

    def say_at_length(self, mark: int, settle_s: float = 1.5) -> tuple[threading.Thread, dict[str, Any]]:
        """Ask for a long reply on a background thread; return once it has been speaking for ``settle_s``."""
        result: dict[str, Any] = {}
        prompt = "Tell me a long story about a lighthouse keeper and his cat."
        thread = threading.Thread(target=lambda: result.update(self.client.request("say", text=prompt)))
        thread.start()
        assert self.events is not None
        self.events.wait_for("speaking_started", mark)
        time.sleep(settle_s)
        return thread, result

    def stop(self, timeout: float = 10.0) -> float:  # type: ignore[override]
        """SIGTERM, wait; returns how long the daemon took to exit."""
        start = time.monotonic()
        super().stop(timeout)
        return time.monotonic() - start


# The recordings the tests speak never say the assistant's name: unless a test is about the name (wake.mode: name,
# the default), the daemon answers everything it hears.
ANSWER_EVERYTHING = "wake:\n  mode: always\n"


@contextlib.contextmanager
def running_daemon(
    pulse_server, xdg_cache_home: Path, log_dir: Path, config: Path | None = None, *, answer_everything: bool = True
):
    """The daemon on the test sound server (with ``config``, else the defaults), listening, with its events
    followed; stopped on exit. ``answer_everything`` adds ``wake.mode: always`` to a config without a wake section."""
    env = dict(pulse_server.env, XDG_CACHE_HOME=str(xdg_cache_home))
    env.pop("VOICEOS_CONFIG", None)
    if answer_everything:
        if config is None:
            config = log_dir / "config.yaml"
            config.write_text(ANSWER_EVERYTHING)
        elif "wake:" not in config.read_text():
            config.write_text(config.read_text() + ANSWER_EVERYTHING)
    proc = DaemonProcess(env, log_dir, config)
    try:
        proc.wait_until("listening")
        proc.events = EventFollower(proc.socket)
        time.sleep(0.2)  # the events subscription is in place
        yield proc
    finally:
        proc.stop()
