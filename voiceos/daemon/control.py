"""The daemon's control socket: a Unix-socket server speaking JSON lines.

Each request is one JSON object per line, ``{"cmd": ..., "id": <optional, echoed>, ...fields}``; each reply is
``{"ok": true, "id": ..., "result": {...}}`` or ``{"ok": false, "id": ..., "error": "<one line>"}``. Requests on one
connection are answered in order. ``events`` turns the connection into a stream of ``voiceos.events.to_wire``
objects until the client closes it (or shuts down its write side). Nothing a client sends or does can stop the
server: bad input gets an error reply, handler failures get an ``internal error`` reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from voiceos.daemon.bus import Subscription
from voiceos.errors import VoiceosError
from voiceos.events import to_wire

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20  # longest accepted request line (without its newline)
COMMANDS = ("say", "listen", "status", "interrupt", "reset", "events", "ping")


def control_socket_path() -> Path:
    """``$XDG_RUNTIME_DIR/voiceos/control.sock``, or ``/tmp/voiceos-<uid>/control.sock`` without a runtime dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "voiceos" if runtime else Path(f"/tmp/voiceos-{os.getuid()}")
    return base / "control.sock"


class ControlHandler(Protocol):
    """What the daemon implements for the control socket. Raise VoiceosError for user-facing failures."""

    async def say(self, text: str) -> dict[str, Any]: ...  # the same object as ``voiceos say --json``
    async def listen(self, path: str) -> dict[str, Any]: ...  # the same object as ``voiceos listen --json``
    def status(self) -> dict[str, Any]: ...
    async def interrupt(self) -> dict[str, Any]: ...
    async def reset(self) -> dict[str, Any]: ...
    def subscribe(self) -> Subscription: ...


class _RequestError(Exception):
    """A bad request: replied to as ``ok: false`` with this message."""


class _LineTooLong(Exception):
    pass


class _LineReader:
    """Split a stream into lines of at most ``limit`` bytes; the rest of an over-long line is skipped."""

    def __init__(self, reader: asyncio.StreamReader, limit: int = MAX_LINE_BYTES) -> None:
        self._reader = reader
        self._limit = limit
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at end of stream; raises _LineTooLong once per long line."""
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._scanned = 0
                if self._skipping:
                    self._skipping = False
                    continue
                if len(line) > self._limit:
                    raise _LineTooLong
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self._limit:
                self._buf.clear()
                self._scanned = 0
                if not self._skipping:
                    self._skipping = True
                    raise _LineTooLong
            chunk = await self._reader.read(64 * 1024)
            if not chunk:
                if self._skipping or not self._buf:
                    return None
                line = bytes(self._buf)  # a last request without its newline
                self._buf.clear()
                return line
            self._buf += chunk


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def _error(request_id: Any, message: str) -> dict[str, Any]:
    reply: dict[str, Any] = {"ok": False}
    if request_id is not None:
        reply["id"] = request_id
    reply["error"] = " ".join(message.split()) or "error"  # always one line
    return reply


def _parse(line: bytes) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _RequestError("request is not valid UTF-8") from err
    try:
        request = json.loads(text)
    except json.JSONDecodeError as err:
        raise _RequestError(f"request is not valid JSON: {err}") from err
    if not isinstance(request, dict):
        raise _RequestError(f"request must be a JSON object, not {type(request).__name__}")
    return request


def _command(request: dict[str, Any]) -> str:
    cmd = request.get("cmd")
    if not isinstance(cmd, str):
        raise _RequestError('request needs "cmd", a string: one of ' + ", ".join(COMMANDS))
    if cmd not in COMMANDS:
        raise _RequestError(f"unknown command {cmd!r}: expected one of " + ", ".join(COMMANDS))
    return cmd


def _prepare_socket_dir(directory: Path) -> None:
    """Create the socket's directory 0700, or check that an existing one is a directory of ours and make it 0700."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except OSError as err:
        raise VoiceosError(f"cannot create the control socket directory {directory}: {err.strerror or err}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise VoiceosError(f"control socket directory {directory} is not a directory")
    if st.st_uid != os.getuid():
        raise VoiceosError(
            f"control socket directory {directory} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


async def _is_listening(path: Path) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout=2.0)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (OSError, asyncio.TimeoutError):
        return True  # something is there but slow or odd: do not take its socket away
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ControlServer:
    """Serve ``handler`` on the Unix socket at ``path`` (default :func:`control_socket_path`)."""

    def __init__(self, handler: ControlHandler, path: str | os.PathLike[str] | None = None) -> None:
        self.handler = handler
        self.path = Path(path) if path is not None else control_socket_path()
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        """Bind and listen; VoiceosError when another daemon already serves this socket."""
        if self._server is not None:
            raise RuntimeError("ControlServer already started")
        self._closing = False
        _prepare_socket_dir(self.path.parent)
        if os.path.lexists(self.path):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise VoiceosError(f"{self.path} exists and is not a socket; remove it to start the daemon")
            if await _is_listening(self.path):
                raise VoiceosError(f"another voiceos daemon is already running (socket {self.path})")
            log.info("removing stale control socket %s", self.path)
            os.unlink(self.path)
        try:
            self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path))
        except OSError as err:
            raise VoiceosError(f"cannot listen on {self.path}: {err.strerror or err}") from err
        os.chmod(self.path, 0o600)
        self._inode = os.lstat(self.path).st_ino
        log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop listening, end every connection and remove the socket file (if it is still ours)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing = True
        # Stop accepting first and let connections accepted a moment ago reach _on_connect (which drops them):
        # closing the server under an accept in flight makes asyncio < 3.12 log an error and leak that socket.
        loop = asyncio.get_running_loop()
        for sock in server.sockets:
            with contextlib.suppress(NotImplementedError, ValueError, OSError):
                loop.remove_reader(sock.fileno())
        for _ in range(3):
            await asyncio.sleep(0)
        server.close()
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        current = asyncio.current_task()  # close() may be called while answering a request: spare that one
        others = [task for task in self._connections if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if current not in self._connections:
            await server.wait_closed()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- one connection ---------------------------------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Start the connection's task here, synchronously, so close() always knows every connection."""
        if self._closing:  # accepted just before close()
            writer.transport.abort()
            return
        task = asyncio.create_task(self._serve_connection(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = _LineReader(reader)
        try:
            while True:
                try:
                    line = await lines.readline()
                except _LineTooLong:
                    writer.write(_encode(_error(None, f"request line longer than {MAX_LINE_BYTES} bytes")))
                    await writer.drain()
                    continue
                if line is None:
                    break
                if not line.strip():
                    continue
                reply, subscription = await self._answer(line)
                try:
                    writer.write(reply)
                    await writer.drain()
                except BaseException:
                    if subscription is not None:
                        subscription.close()
                    raise
                if subscription is not None:
                    await self._stream_events(subscription, lines, writer)
                    break
        except ConnectionError:
            log.debug("control client went away")
        except Exception:
            log.exception("control connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> tuple[bytes, Subscription | None]:
        """The encoded reply to one request line, and the subscription to stream when it was ``events``."""
        request_id = cmd = None
        subscription = None
        try:
            request = _parse(line)
            request_id = request.get("id")
            cmd = _command(request)
            if cmd == "events":
                subscription = self.handler.subscribe()
                result: Any = {"subscribed": True}
            else:
                result = await self._dispatch(cmd, request)
            reply: dict[str, Any] = {"ok": True}
            if request_id is not None:
                reply["id"] = request_id
            reply["result"] = result
            try:
                return _encode(reply), subscription
            except (TypeError, ValueError) as err:
                raise TypeError(f"the result of {cmd!r} is not JSON-serializable: {err}") from err
        except _RequestError as err:
            reply = _error(request_id, str(err))
        except VoiceosError as err:
            reply = _error(request_id, str(err) or type(err).__name__)
        except Exception as err:
            log.exception("control command %r failed", cmd)
            lines = str(err).strip().splitlines()
            reply = _error(request_id, f"internal error: {type(err).__name__}" + (f": {lines[0]}" if lines else ""))
        if subscription is not None:
            subscription.close()
        return _encode(reply), None

    @staticmethod
    def _string_field(request: dict[str, Any], name: str) -> str:
        value = request.get(name)
        if not isinstance(value, str):
            raise _RequestError(f'"{request["cmd"]}" needs "{name}", a string')
        return value

    async def _dispatch(self, cmd: str, request: dict[str, Any]) -> Any:
        handler = self.handler
        if cmd == "say":
            return await handler.say(self._string_field(request, "text"))
        if cmd == "listen":
            return await handler.listen(self._string_field(request, "path"))
        if cmd == "status":
            return handler.status()
        if cmd == "interrupt":
            return await handler.interrupt()
        if cmd == "reset":
            return await handler.reset()
        return {"pong": True, "pid": os.getpid()}

    async def _stream_events(
        self, subscription: Subscription, lines: _LineReader, writer: asyncio.StreamWriter
    ) -> None:
        """Write events until the client closes its side (or the bus ends); input meanwhile is ignored."""

        async def pump() -> None:
            async for event in subscription:
                try:
                    data = _encode(to_wire(event))
                except (TypeError, ValueError):
                    log.exception("event %s cannot be sent as JSON; skipped", event.name)
                    continue
                writer.write(data)
                await writer.drain()

        async def wait_for_eof() -> None:
            while True:
                try:
                    if await lines.readline() is None:
                        return
                except _LineTooLong:
                    pass

        tasks = [asyncio.create_task(pump()), asyncio.create_task(wait_for_eof())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, ConnectionError):
                    raise exc
        finally:
            subscription.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
