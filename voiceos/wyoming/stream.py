"""Bounds on what one client may send, enforced around wyoming's own reader (its framing is not re-implemented).

``wyoming.event.async_read_event`` reads an event as a JSON header line, then ``data_length`` bytes of JSON, then
``payload_length`` bytes of payload, and turns any ``ValueError`` into "end of stream" (``None``). Reading through a
:class:`BoundedReader` caps each of those reads and remembers what was being read, so the handler can tell a clean
end of stream from a bad event and say what was wrong before it answers or closes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

# The header line: asyncio's StreamReader limit, which wyoming's servers keep (start_server is called without one).
MAX_HEADER_BYTES = 2**16
# Event data (JSON) and payload (audio): 1 MiB holds ~2.7 s of 48 kHz stereo 32-bit audio; clients send ~0.1 s.
MAX_READ_BYTES = 2**20


@dataclass(frozen=True)
class Problem:
    """Why a client's event could not be read: ``code`` for the error event, ``usable`` if the connection is."""

    text: str
    code: str
    usable: bool


class BoundedReader:
    """A StreamReader whose ``readexactly`` refuses more than ``max_bytes`` (raising the ValueError wyoming expects)."""

    def __init__(self, reader: asyncio.StreamReader, max_bytes: int = MAX_READ_BYTES) -> None:
        self._reader = reader
        self.max_bytes = max_bytes
        self.refused: str | None = None
        self.last_line = b""
        self.reads_after_line = 0  # data/payload reads since the header line: 0 means the header itself was bad

    async def readline(self) -> bytes:
        self.last_line, self.reads_after_line = b"", 0
        try:
            self.last_line = await self._reader.readline()
        except ValueError:  # asyncio's LimitOverrunError, as readline raises it
            self.refused = f"event header longer than {MAX_HEADER_BYTES} bytes"
            raise
        return self.last_line

    async def readexactly(self, n: int) -> bytes:
        self.reads_after_line += 1
        if not isinstance(n, int) or isinstance(n, bool):
            self.refused = f"data_length and payload_length must be integers, got {n!r}"[:200]
            raise ValueError(self.refused)
        if n > self.max_bytes:
            self.refused = f"event of {n} bytes is over the limit of {self.max_bytes} bytes"
            raise ValueError(self.refused)
        return await self._reader.readexactly(n)

    def at_eof(self) -> bool:
        return self._reader.at_eof()

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def diagnose(self, error: BaseException | None) -> Problem | None:
        """What went wrong with the event just read (``None``: the client simply closed the connection).

        ``error`` is what ``async_read_event`` raised, if anything: it lets a truncated payload (``EOFError``) and a
        header of the wrong shape (``KeyError``, ``TypeError``, ``AttributeError``) through, and swallows the rest.
        """
        if self.refused is not None:
            return Problem(self.refused, "too-large", usable=False)
        if isinstance(error, asyncio.IncompleteReadError):
            got, wanted = len(error.partial), error.expected
            return Problem(f"truncated event: the stream ended {got} of {wanted} bytes into it", "truncated", False)
        if error is None and not self.last_line:
            return None
        if not self.last_line.endswith(b"\n"):
            return Problem("truncated event: the stream ended inside its header line", "truncated", usable=False)
        fault = _header_fault(self.last_line)
        if self.reads_after_line:  # data or payload were read: where the next event starts is unknown
            text = f"malformed event header: {fault}" if fault else "malformed event data: not a JSON object"
            return Problem(text, "bad-event", usable=False)
        fault = fault or "data_length or payload_length is not a number"
        return Problem(f"malformed event header: {fault}", "bad-event", usable=True)


def _header_fault(line: bytes) -> str | None:
    """What is wrong with a header line, or ``None`` when it looks like one."""
    try:
        header = json.loads(line)
    except ValueError as err:
        return f"not JSON ({getattr(err, 'msg', err)})"
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        return 'expected a JSON object with a "type" string'
    if not isinstance(header.get("data", {}), dict):
        return '"data" must be a JSON object'
    return None
