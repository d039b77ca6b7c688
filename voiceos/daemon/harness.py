"""The real daemon (``python -m voiceos run``) as a subprocess, driven from outside as a user's microphone, speaker
and ``voiceos`` client would drive it.

:class:`DaemonProcess` starts it in a given environment (its control socket is where ``voiceos`` clients look:
``$XDG_RUNTIME_DIR/voiceos/control.sock``), waits for a state and stops it; the tests run it on their session's
sound server. :class:`VirtualAudioDaemon` adds a private PulseAudio server with virtual devices: ``voiceos bench``
and the soak use it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from voiceos.daemon.client import ControlClient
from voiceos.errors import VoiceosError

# Recordings played into the microphone never say the assistant's name: a measuring rig answers everything it hears.
ANSWER_EVERYTHING = {"wake": {"mode": "always"}}


def config_with(
    config_path: str | None, overrides: dict[str, dict[str, Any]], directory: Path, name: str = "variant.yaml"
) -> str:
    """A copy of the config (the default file when None) with ``overrides`` merged in, written under ``directory``."""
    import yaml

    from voiceos.config import config_from_dict, default_config_path

    source = Path(config_path) if config_path else default_config_path()
    data = (yaml.safe_load(source.read_text(encoding="utf-8")) or {}) if source else {}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    config_from_dict(data, source=str(source))  # refuse a broken variant here, not in the daemon
    path = directory / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


class DaemonProcess:
    """``python -m voiceos [--config PATH] run`` with ``env``, its output appended to ``log_path``.

    ``new_session``: the daemon gets a session of its own, so Ctrl+C on the caller reaches it only through
    :meth:`stop`."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        config_path: str | Path | None = None,
        *,
        client_timeout: float = 60.0,
        new_session: bool = False,
    ) -> None:
        self.env = env = {**env, "PYTHONUNBUFFERED": "1"}  # also what clients of this daemon run with
        cmd = [sys.executable, "-m", "voiceos", *(["--config", str(config_path)] if config_path else []), "run"]
        self.log_path = log_path
        with open(log_path, "ab") as daemon_log:
            self.process = subprocess.Popen(
                cmd, env=env, stdout=daemon_log, stderr=daemon_log, start_new_session=new_session
            )
        self.pid = self.process.pid
        self.socket = str(Path(env["XDG_RUNTIME_DIR"]) / "voiceos" / "control.sock")
        self.client = ControlClient(self.socket, timeout=client_timeout)

    def alive(self) -> bool:
        return self.process.poll() is None

    def status_when(self, state: str, timeout: float) -> dict[str, Any] | None:
        """The ``status`` reply once the daemon reports ``state`` within ``timeout`` s; None on time or exit."""
        deadline = time.monotonic() + timeout
        probe = ControlClient(self.socket, timeout=10)
        while time.monotonic() < deadline and self.alive():
            try:
                status = probe.request("status")
                if status["state"] == state:
                    return status
            except (VoiceosError, OSError):  # not serving yet (loading models), or a slow reply
                pass
            time.sleep(0.2)
        return None

    def require_state(self, state: str, timeout: float, who: str) -> dict[str, Any]:
        """:meth:`status_when`, or a reason (exit status, or the state it was in) with the log's tail."""
        status = self.status_when(state, timeout)
        if status is not None:
            return status
        if not self.alive():
            reason = f"the daemon exited with status {self.process.returncode}"
        else:
            try:
                last = ControlClient(self.socket, timeout=10).request("status")
            except (VoiceosError, OSError) as err:
                last = {"error": str(err)}
            reason = f"the daemon was not {state!r} after {timeout:.0f} s (status {last}; log: {self.log_path})"
        raise VoiceosError(f"{who}: {reason}:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait; the exit status (None if it had to be killed)."""
        status = self.process.poll()
        if status is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return status


class VirtualAudioDaemon(DaemonProcess):
    """A private sound server in ``root`` (virtual microphone ``vmic``, speaker ``spk``) and the daemon on it, which
    answers everything it hears (``wake.mode: always``: the recordings played never say its name) unless
    ``answer_everything`` is False.

    ``env`` adds to the daemon's environment (e.g. ``XDG_CACHE_HOME``); the sound server's client settings win."""

    def __init__(
        self,
        root: Path,
        config_path: str | None,
        env: dict[str, str] | None = None,
        *,
        client_timeout: float = 60.0,
        answer_everything: bool = True,
    ) -> None:
        if answer_everything:
            config_path = config_with(config_path, ANSWER_EVERYTHING, root, "answer-everything.yaml")
        from voiceos.audio.virtual import PulseServer, PulseUnavailable

        self.root = root
        self.server = PulseServer(root)
        try:
            self.server.start()
        except PulseUnavailable as err:
            raise VoiceosError(str(err).splitlines()[0]) from None
        daemon_env = {**self.server.env, **(env or {}), **self.server.client_env}
        daemon_env.pop("VOICEOS_CONFIG", None)
        super().__init__(daemon_env, root / "daemon.log", config_path, client_timeout=client_timeout, new_session=True)

    def wait_listening(self, timeout: float) -> bool:
        """Whether the daemon reports ``listening`` within ``timeout`` seconds (False at once if it exited)."""
        return self.status_when("listening", timeout) is not None

    def require_listening(self, timeout: float, who: str) -> None:
        self.require_state("listening", timeout, who)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the daemon, then stop the sound server; the daemon's exit status (None if it had to be killed)."""
        status = super().stop(timeout)
        self.server.stop()
        return status
