"""The daemon's control socket: a Unix-socket server speaking JSON lines.

Each request is one JSON object per line, ``{"cmd": ..., "id": <optional, echoed>, ...fields}``; each reply is
``{"ok": true, "id": ..., "result": {...}}`` or ``{"ok": false, "id": ..., "error": "<one line>"}``. Requests on one
connection are answered in order. ``events`` turns the connection into a stream of ``voiceos.events.to_wire``
objects until the client closes it (or shuts down its write side). Nothing a client sends or does can stop the
server: bad input gets an error reply, handler failures get an ``internal error`` reply, and a client that does not
read its replies is dropped once ``write_buffer_limit`` bytes wait for it (memory stays bounded).

Only the daemon's own user may talk to it: the socket's directory is 0700, the socket 0600, and each connection's
peer credentials (SO_PEERCRED) are checked, so a socket reached some other way (a loosened directory, a passed file
descriptor) still refuses other users. The wire format lives in :mod:`voiceos.daemon.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any, Protocol

from voiceos.daemon.bus import Subscription
from voiceos.daemon.protocol import (
    MAX_LINE_BYTES,
    LineReader,
    LineTooLong,
    ProtocolError,
    Request,
    encode,
    error_reply,
    parse_request,
)
from voiceos.errors import VoiceosError
from voiceos.events import to_wire

log = logging.getLogger(__name__)

WRITE_BUFFER_LIMIT = 4 << 20  # replies not yet taken by a client; past this it is dropped as not reading


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
    async def memory(self, remove: object = None) -> dict[str, Any]: ...  # the facts (after removing one)
    async def reminders(self, cancel: object = None) -> dict[str, Any]: ...  # the reminders (after cancelling one)
    async def mute(self, muted: bool) -> dict[str, Any]: ...  # close (True) or reopen the microphone
    def subscribe(self) -> Subscription: ...


class _SlowReader(Exception):
    """The client leaves its replies unread past the write buffer limit."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a connected Unix socket (Linux SO_PEERCRED)."""
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", data)
    return pid, uid, gid


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
    """Serve ``handler`` on the Unix socket at ``path`` (default :func:`control_socket_path`).

    ``allowed_uid`` is the one user whose connections are served (default: this process's uid);
    ``write_buffer_limit`` bounds the unsent replies kept for one client before it is dropped.
    """

    def __init__(
        self,
        handler: ControlHandler,
        path: str | os.PathLike[str] | None = None,
        *,
        allowed_uid: int | None = None,
        write_buffer_limit: int = WRITE_BUFFER_LIMIT,
    ) -> None:
        self.handler = handler
        self.path = Path(path) if path is not None else control_socket_path()
        self.allowed_uid = os.getuid() if allowed_uid is None else allowed_uid
        self.write_buffer_limit = write_buffer_limit
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

    def _refusal(self, writer: asyncio.StreamWriter) -> str | None:
        """Why this connection must be refused (its peer is not the allowed user), or None to serve it."""
        sock = writer.get_extra_info("socket")
        try:
            pid, uid, _ = peer_credentials(sock)
        except (OSError, AttributeError) as err:  # fail closed: no credentials, no service
            log.warning("refused a control connection: cannot read its peer credentials (%s)", err)
            return "permission denied: cannot check who is connecting"
        if uid != self.allowed_uid:
            log.warning(
                "refused a control connection from uid %d (pid %d): only uid %d may use this socket",
                uid,
                pid,
                self.allowed_uid,
            )
            return f"permission denied: this voiceos daemon serves uid {self.allowed_uid} only, not uid {uid}"
        return None

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Queue ``data``; a client whose unread replies pass the limit is dropped rather than buffered for."""
        writer.write(data)
        pending = writer.transport.get_write_buffer_size()
        if pending > self.write_buffer_limit:
            raise _SlowReader(pending)
        await writer.drain()  # never waits: the high-water mark is the limit (see _serve_connection)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = LineReader(reader)
        try:
            refusal = self._refusal(writer)
            if refusal is not None:
                writer.write(encode(error_reply(None, refusal)))
                return
            writer.transport.set_write_buffer_limits(high=self.write_buffer_limit)
            while True:
                try:
                    line = await lines.readline()
                except LineTooLong:
                    await self._send(
                        writer, encode(error_reply(None, f"request line longer than {MAX_LINE_BYTES} bytes"))
                    )
                    continue
                if line is None:
                    break
                if not line.strip():
                    continue
                reply, subscription = await self._answer(line)
                try:
                    await self._send(writer, reply)
                except BaseException:
                    if subscription is not None:
                        subscription.close()
                    raise
                if subscription is not None:
                    await self._stream_events(subscription, lines, writer)
                    break
        except _SlowReader as err:
            log.warning("dropped a control client that does not read its replies (%s bytes unsent)", err.args[0])
            writer.transport.abort()
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
            request = parse_request(line)
            request_id, cmd = request.id, request.cmd
            if cmd == "events":
                subscription = self.handler.subscribe()
                result: Any = {"subscribed": True}
            else:
                result = await self._dispatch(request)
            reply: dict[str, Any] = {"ok": True}
            if request_id is not None:
                reply["id"] = request_id
            reply["result"] = result
            try:
                return encode(reply), subscription
            except (TypeError, ValueError) as err:
                raise TypeError(f"the result of {cmd!r} is not JSON-serializable: {err}") from err
        except ProtocolError as err:
            reply = error_reply(err.request_id, str(err))
        except VoiceosError as err:
            reply = error_reply(request_id, str(err) or type(err).__name__)
        except Exception as err:
            log.exception("control command %r failed", cmd)
            lines = str(err).strip().splitlines()
            reply = error_reply(
                request_id, f"internal error: {type(err).__name__}" + (f": {lines[0]}" if lines else "")
            )
        if subscription is not None:
            subscription.close()
        return encode(reply), None

    async def _dispatch(self, request: Request) -> Any:
        handler, cmd = self.handler, request.cmd
        if cmd == "say":
            return await handler.say(request.string("text"))
        if cmd == "listen":
            return await handler.listen(request.string("path"))
        if cmd == "status":
            return handler.status()
        if cmd == "interrupt":
            return await handler.interrupt()
        if cmd == "reset":
            return await handler.reset()
        if cmd == "memory":
            return await handler.memory(request.body.get("remove"))
        if cmd == "reminders":
            return await handler.reminders(request.body.get("cancel"))
        if cmd in ("mute", "unmute"):
            return await handler.mute(cmd == "mute")
        return {"pong": True, "pid": os.getpid()}

    async def _stream_events(self, subscription: Subscription, lines: LineReader, writer: asyncio.StreamWriter) -> None:
        """Write events until the client closes its side (or the bus ends); input meanwhile is ignored."""

        async def pump() -> None:
            async for event in subscription:
                try:
                    data = encode(to_wire(event))
                except (TypeError, ValueError):
                    log.exception("event %s cannot be sent as JSON; skipped", event.name)
                    continue
                await self._send(writer, data)

        async def wait_for_eof() -> None:
            while True:
                try:
                    if await lines.readline() is None:
                        return
                except LineTooLong:
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
