"""The real daemon (``python -m voiceos run``) as a subprocess on a private PulseAudio server with virtual devices.

``voiceos bench`` and the soak both drive the daemon from outside, as a user's microphone and speaker would: this is
the one place that starts the sound server and the daemon, waits until it listens, and stops both.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from voiceos.daemon.client import ControlClient
from voiceos.errors import VoiceosError


class VirtualAudioDaemon:
    """A private sound server in ``root`` (virtual microphone ``vmic``, speaker ``spk``) and the daemon on it.

    ``env`` adds to the daemon's environment (e.g. ``XDG_CACHE_HOME``); the sound server's client settings win.
    The daemon runs in a session of its own, so Ctrl+C on the caller reaches it only through :meth:`stop`."""

    def __init__(
        self, root: Path, config_path: str | None, env: dict[str, str] | None = None, *, client_timeout: float = 60.0
    ) -> None:
        from voiceos.audio.virtual import PulseServer, PulseUnavailable

        self.root = root
        self.server = PulseServer(root)
        try:
            self.server.start()
        except PulseUnavailable as err:
            raise VoiceosError(str(err).splitlines()[0]) from None
        daemon_env = {**self.server.env, **(env or {}), **self.server.client_env, "PYTHONUNBUFFERED": "1"}
        daemon_env.pop("VOICEOS_CONFIG", None)
        cmd = [sys.executable, "-m", "voiceos", *(["--config", config_path] if config_path else []), "run"]
        self.log_path = root / "daemon.log"
        with open(self.log_path, "ab") as daemon_log:
            self.daemon = subprocess.Popen(
                cmd, env=daemon_env, stdout=daemon_log, stderr=daemon_log, start_new_session=True
            )
        self.pid = self.daemon.pid
        self.socket = str(self.server.root / "voiceos" / "control.sock")
        self.client = ControlClient(self.socket, timeout=client_timeout)

    def alive(self) -> bool:
        return self.daemon.poll() is None

    def wait_listening(self, timeout: float) -> bool:
        """Whether the daemon reports ``listening`` within ``timeout`` seconds (False at once if it exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            try:
                if self.client.request("status")["state"] == "listening":
                    return True
            except VoiceosError:
                pass
            time.sleep(0.2)
        return False

    def require_listening(self, timeout: float, who: str) -> None:
        """:meth:`wait_listening`, or a one-line reason (exit status or time) with the log's tail."""
        if self.wait_listening(timeout):
            return
        if not self.alive():
            raise VoiceosError(f"{who}: the daemon exited with status {self.daemon.returncode}:\n{self.log_tail()}")
        raise VoiceosError(f"{who}: the daemon was not listening after {timeout:.0f} s (log: {self.log_path})")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the daemon, then stop the sound server; the daemon's exit status (None if it had to be killed)."""
        status: int | None = self.daemon.poll()
        if status is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                status = self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(5)
        self.server.stop()
        return status
