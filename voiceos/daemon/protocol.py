"""The control socket's wire format: JSON lines, parsed and checked without any I/O of their own.

A request is one line holding a JSON object ``{"cmd": ..., "id": <optional, echoed>, ...fields}``. Whatever a client
sends, :func:`parse_request` either returns a :class:`Request` whose fields have the types the command needs or
raises :class:`ProtocolError` with a one-line message; nothing else escapes it (the fuzz tests hold it to that).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

MAX_LINE_BYTES = 1 << 20  # longest accepted request line (without its newline)
COMMANDS = ("say", "listen", "status", "interrupt", "reset", "memory", "reminders", "mute", "unmute", "events", "ping")
STRING_FIELDS = {"say": "text", "listen": "path"}  # the field each command needs, a string


class ProtocolError(Exception):
    """A bad request: replied to as ``ok: false`` with this message (and the request's id when it had one)."""

    def __init__(self, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Request:
    """A checked request: ``body`` is the whole object as sent, ``cmd`` one of COMMANDS."""

    cmd: str
    body: dict[str, Any]

    @property
    def id(self) -> Any:
        return self.body.get("id")

    def string(self, name: str) -> str:
        """A field :func:`parse_request` has checked to be a string."""
        return self.body[name]


def parse_request(line: bytes) -> Request:
    """One request line (without its newline) -> Request; ProtocolError for anything else."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError("request is not valid UTF-8") from err
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"request is not valid JSON: {err}") from err
    except ValueError as err:  # an integer too long to convert (Python's int_max_str_digits)
        raise ProtocolError(f"request is not usable JSON: {err}") from err
    except RecursionError as err:
        raise ProtocolError("request is not usable JSON: nested too deeply") from err
    if not isinstance(body, dict):
        raise ProtocolError(f"request must be a JSON object, not {_json_type(body)}")
    request_id = body.get("id")
    try:  # the reply echoes the id and may echo text: it must be encodable again
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ProtocolError("request holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from err
    except RecursionError as err:
        raise ProtocolError("request is not usable JSON: nested too deeply") from err
    cmd = body.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError('request needs "cmd", a string: one of ' + ", ".join(COMMANDS), request_id)
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {_short(cmd)}: expected one of " + ", ".join(COMMANDS), request_id)
    field = STRING_FIELDS.get(cmd)
    if field is not None and not isinstance(body.get(field), str):
        raise ProtocolError(f'"{cmd}" needs "{field}", a string', request_id)
    return Request(cmd, body)


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line (UTF-8, newline-terminated): a reply, or a request as the client sends it."""
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def error_reply(request_id: Any, message: str) -> dict[str, Any]:
    """``{"ok": false, "id": ..., "error": ...}``; the message is collapsed to one line."""
    reply: dict[str, Any] = {"ok": False}
    if request_id is not None:
        reply["id"] = request_id
    reply["error"] = " ".join(message.split()) or "error"
    return reply


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _short(text: str, limit: int = 40) -> str:
    """repr of a client-chosen string, cut so an error line stays short."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class LineTooLong(Exception):
    """A request line longer than the reader's limit (its rest is skipped)."""


class LineReader:
    """Split a stream into lines of at most ``limit`` bytes; the rest of an over-long line is skipped."""

    def __init__(self, reader: asyncio.StreamReader, limit: int = MAX_LINE_BYTES) -> None:
        self._reader = reader
        self._limit = limit
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at end of stream; raises LineTooLong once per long line."""
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
                    raise LineTooLong
                return line
            self._scanned = len(self._buf)
            if len(self._buf) > self._limit:
                self._buf.clear()
                self._scanned = 0
                if not self._skipping:
                    self._skipping = True
                    raise LineTooLong
            chunk = await self._reader.read(64 * 1024)
            if not chunk:
                if self._skipping or not self._buf:
                    return None
                line = bytes(self._buf)  # a last request without its newline
                self._buf.clear()
                return line
            self._buf += chunk
