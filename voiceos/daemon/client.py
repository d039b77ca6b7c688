"""A small synchronous client for the daemon's control socket (used by the CLI; standard library only)."""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from voiceos.daemon.control import control_socket_path
from voiceos.daemon.protocol import encode
from voiceos.errors import VoiceosError

CONNECT_TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 64 << 20


class DaemonUnavailable(VoiceosError):
    """Nothing listens on the control socket: no daemon is running (callers may fall back to local mode)."""


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(CONNECT_TIMEOUT_S if timeout is None else min(timeout, CONNECT_TIMEOUT_S))
    try:
        sock.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError) as err:
        sock.close()
        raise DaemonUnavailable(f"no voiceos daemon is running (nothing listens on {path})") from err
    except TimeoutError as err:
        sock.close()
        raise VoiceosError(f"the voiceos daemon does not accept connections (socket {path})") from err
    except OSError as err:
        sock.close()
        raise VoiceosError(f"cannot connect to the voiceos daemon at {path}: {err.strerror or err}") from err
    sock.settimeout(timeout)
    return sock


def daemon_running(path: str | os.PathLike[str] | None = None) -> bool:
    """Whether a daemon accepts connections on the control socket."""
    try:
        _connect(Path(path) if path is not None else control_socket_path(), CONNECT_TIMEOUT_S).close()
    except VoiceosError:
        return False
    return True


class ControlClient:
    """One connection to the daemon, opened on first use; ``timeout`` bounds each wait for a reply (None: wait)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float | None = 300.0) -> None:
        self.path = Path(path) if path is not None else control_socket_path()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: BinaryIO | None = None
        self._ids = itertools.count(1)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._file = None

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command and return its ``result``; VoiceosError with the daemon's message when it fails."""
        if self._sock is None:
            self._sock = _connect(self.path, self.timeout)
            self._file = self._sock.makefile("rb")
        assert self._file is not None
        request_id = fields.pop("id", None)
        if request_id is None:
            request_id = next(self._ids)
        try:
            reply = _exchange(self._sock, self._file, {"cmd": cmd, "id": request_id, **fields}, self.path)
        except BaseException:
            self.close()  # the stream is out of step now: never reuse it
            raise
        if reply.get("id") != request_id:
            self.close()
            if reply.get("ok") is False and "id" not in reply:  # about the connection, not a request (a refusal)
                raise VoiceosError(f"the voiceos daemon refused: {reply.get('error')}")
            raise VoiceosError(f"the voiceos daemon answered request {reply.get('id')!r}, not {request_id!r}")
        return _result(reply)

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """Subscribe on a connection of its own and yield each event's wire object until the daemon stops."""
        sock = _connect(self.path, self.timeout)
        try:
            file = sock.makefile("rb")
            try:
                _result(_exchange(sock, file, {"cmd": "events"}, self.path))
                sock.settimeout(None)  # events come when they come
                while True:
                    line = file.readline(MAX_REPLY_BYTES)
                    if not line:
                        return
                    yield json.loads(line)
            finally:
                file.close()
        finally:
            sock.close()


def _exchange(sock: socket.socket, file: BinaryIO, obj: dict[str, Any], path: Path) -> dict[str, Any]:
    """Send one request and read its reply; a daemon that hung up on us may have said why first (a refusal)."""
    try:
        _send(sock, obj)
    except VoiceosError as err:
        try:
            return _read_reply(file, path)
        except VoiceosError:
            raise err from None
    return _read_reply(file, path)


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    try:
        sock.sendall(encode(obj))
    except OSError as err:
        raise VoiceosError(f"lost the connection to the voiceos daemon: {err.strerror or err}") from err


def _read_reply(file: BinaryIO, path: Path) -> dict[str, Any]:
    try:
        line = file.readline(MAX_REPLY_BYTES)
    except TimeoutError as err:
        raise VoiceosError(f"the voiceos daemon did not answer in time (socket {path})") from err
    except OSError as err:
        raise VoiceosError(f"lost the connection to the voiceos daemon: {err.strerror or err}") from err
    if not line.endswith(b"\n"):
        raise VoiceosError("the voiceos daemon closed the connection before answering")
    try:
        reply = json.loads(line)
    except ValueError as err:
        raise VoiceosError(f"the voiceos daemon sent an unreadable reply: {err}") from err
    if not isinstance(reply, dict) or "ok" not in reply:
        raise VoiceosError('the voiceos daemon sent a reply without "ok"')
    return reply


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply["ok"]:
        raise VoiceosError(str(reply.get("error") or "the voiceos daemon reported an unspecified error"))
    return reply.get("result") or {}


class EventTimeout(VoiceosError):
    """An awaited event did not come."""


class EventFollower:
    """Follows the daemon's ``events`` stream on a thread (for ``voiceos bench``, the soak and the tests).

    Each kept event gets an ``arrived`` key (``time.monotonic()`` when it was read); ``keep`` limits which names are
    kept (all by default).
    """

    def __init__(self, socket_path: str, keep: frozenset[str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._keep = keep
        self._cond = threading.Condition()
        self._client = ControlClient(socket_path, timeout=None)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for event in self._client.iter_events():
                if self._keep is None or event["event"] in self._keep:
                    with self._cond:
                        self.events.append({**event, "arrived": time.monotonic()})
                        self._cond.notify_all()
        except Exception:  # the daemon went away
            pass

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int, name: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events[mark:] if name is None or e["event"] == name]

    def wait_for(
        self, name: str | tuple[str, ...], mark: int = 0, timeout: float = 120.0, where=lambda e: True
    ) -> dict[str, Any]:
        """The first ``name`` event (or any of several names) from ``mark`` on that ``where`` accepts;
        :class:`EventTimeout` after ``timeout``."""
        names = (name,) if isinstance(name, str) else name
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[mark:]:
                    if event["event"] in names and where(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [e["event"] for e in self.events[mark:]]
                    raise EventTimeout(f"the daemon sent no {name!r} event within {timeout:.0f} s; saw {seen}")
                self._cond.wait(left)

    def wait(self, seconds: float) -> None:
        """Until the next event, or ``seconds``."""
        with self._cond:
            self._cond.wait(seconds)
