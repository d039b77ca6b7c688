"""`voiceos run` as a real subprocess on the private PulseAudio server, with an event recorder on its socket."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from voiceos.daemon.client import ControlClient, EventFollower


class DaemonProcess:
    """The daemon, with its control socket where ``voiceos`` clients look for it: $XDG_RUNTIME_DIR/voiceos/."""

    def __init__(self, env: dict[str, str], log_dir: Path, config: Path | None = None) -> None:
        self.env = env
        self.socket = str(Path(env["XDG_RUNTIME_DIR"]) / "voiceos" / "control.sock")
        self.log_path = log_dir / "daemon.log"
        cmd = [sys.executable, "-m", "voiceos"]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += ["run"]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=self._log, stderr=self._log)
        self.client = ControlClient(self.socket, timeout=300)

    def wait_until(self, state: str, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log_tail()}")
            if os.path.exists(self.socket):
                try:
                    status = ControlClient(self.socket, timeout=10).request("status")
                    if status["state"] == state:
                        return status
                except Exception:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"daemon not {state!r} after {timeout} s (status {status}):\n{self.log_tail()}")

    def say_at_length(self, mark: int, settle_s: float = 1.5) -> tuple[threading.Thread, dict[str, Any]]:
        """Ask for a long reply on a background thread; return once it has been speaking for ``settle_s``."""
        result: dict[str, Any] = {}
        prompt = "Tell me a long story about a lighthouse keeper and his cat."
        thread = threading.Thread(target=lambda: result.update(self.client.request("say", text=prompt)))
        thread.start()
        self.events.wait_for("speaking_started", mark)
        time.sleep(settle_s)
        return thread, result

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 10.0) -> float:
        """SIGTERM, wait; returns how long the daemon took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return time.monotonic() - start


@contextlib.contextmanager
def running_daemon(pulse_server, xdg_cache_home: Path, log_dir: Path, config: Path | None = None):
    """The daemon on the test sound server (with ``config``, else the defaults), listening, with its events
    followed; stopped on exit."""
    env = dict(pulse_server.env, XDG_CACHE_HOME=str(xdg_cache_home))
    env.pop("VOICEOS_CONFIG", None)
    proc = DaemonProcess(env, log_dir, config)
    try:
        proc.wait_until("listening")
        proc.events = EventFollower(proc.socket)
        time.sleep(0.2)  # the events subscription is in place
        yield proc
    finally:
        proc.stop()
