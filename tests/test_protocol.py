"""Property-based fuzzing of the control socket's wire format (voiceos.daemon.protocol), pure logic without sockets.

Whatever bytes arrive, the parser returns a checked Request or raises ProtocolError, whose reply is one encodable
line; valid requests round-trip; the line reader splits any chunking of a stream the same way.
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voiceos.daemon.protocol import (
    COMMANDS,
    STRING_FIELDS,
    LineReader,
    LineTooLong,
    ProtocolError,
    Request,
    encode,
    error_reply,
    parse_request,
)

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Text including lone surrogates, which JSON can carry as "\udXXX" escapes but UTF-8 cannot.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
CLEAN_TEXT = st.text(max_size=40)  # no surrogates: what a well-behaved client can send
CLEAN_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | CLEAN_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(CLEAN_TEXT, inner, max_size=4),
    max_leaves=12,
)


def parse_or_refuse(line: bytes) -> Request | None:
    """parse_request, asserting that a refusal is a ProtocolError whose reply is one short, encodable line."""
    try:
        request = parse_request(line)
    except ProtocolError as err:
        reply = error_reply(err.request_id, str(err))
        data = encode(reply)
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        assert len(reply["error"]) < 300
        return None
    assert request.cmd in COMMANDS
    field = STRING_FIELDS.get(request.cmd)
    assert field is None or isinstance(request.string(field), str)
    encode({"ok": True, "id": request.id, "result": {"echo": request.body}})  # whatever came can be echoed
    return request


@FUZZ
@given(st.binary(max_size=200))
@example(b"\xff\xfe")
@example(b"\x00")
@example(b"[" * 10_000)
@example(b'{"id": ' + b"1" * 5000 + b', "cmd": "ping"}')
@example(b'{"cmd": "ping", "id": "\\udc00"}')
def test_arbitrary_bytes_parse_or_raise_protocol_error_only(data):
    parse_or_refuse(data)


@FUZZ
@given(JSON_VALUES, st.booleans())
def test_arbitrary_json_values_parse_or_raise_protocol_error_only(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    parse_or_refuse(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    st.sampled_from(COMMANDS),
    st.dictionaries(st.sampled_from(["id", "text", "path", "extra"]), JSON_VALUES, max_size=4),
)
def test_objects_with_a_known_command_and_any_fields_parse_or_raise_protocol_error_only(cmd, fields):
    request = parse_or_refuse(json.dumps({"cmd": cmd, **fields}).encode())
    if request is not None:
        assert request.cmd == cmd and request.body["cmd"] == cmd


@st.composite
def valid_requests(draw) -> dict:
    cmd = draw(st.sampled_from(COMMANDS))
    request: dict = {"cmd": cmd}
    if cmd in STRING_FIELDS:
        request[STRING_FIELDS[cmd]] = draw(CLEAN_TEXT)
    if draw(st.booleans()):
        request["id"] = draw(CLEAN_VALUES)
    extra = draw(st.dictionaries(CLEAN_TEXT.filter(lambda k: k not in request), CLEAN_VALUES, max_size=3))
    return {**request, **extra}


@FUZZ
@given(valid_requests())
def test_valid_requests_round_trip(request):
    line = encode(request)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]  # one line, whatever the text holds
    parsed = parse_request(line[:-1])
    assert parsed.cmd == request["cmd"]
    assert parsed.body == request
    assert parsed.id == request.get("id")
    if request["cmd"] in STRING_FIELDS:
        assert parsed.string(STRING_FIELDS[request["cmd"]]) == request[STRING_FIELDS[request["cmd"]]]


# -- the line reader ----------------------------------------------------------------------------------------------
LIMIT = 16
TOO_LONG = object()


def expected_lines(data: bytes) -> list:
    """What LineReader must produce: each line, TOO_LONG for one over the limit, a last line without newline."""
    *lines, tail = data.split(b"\n")
    out: list = [TOO_LONG if len(line) > LIMIT else line for line in lines]
    if len(tail) > LIMIT:
        out.append(TOO_LONG)
    elif tail:
        out.append(tail)
    return out


class ChunkStream:
    """Hands out the chunks one read at a time, as a socket might (a StreamReader would merge them)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = [c for c in chunks if c]  # an empty read means end of stream

    async def read(self, n: int) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


def read_all(chunks: list[bytes]) -> list:
    async def run() -> list:
        reader, out = LineReader(ChunkStream(chunks), limit=LIMIT), []
        while True:
            try:
                line = await reader.readline()
            except LineTooLong:
                out.append(TOO_LONG)
                continue
            if line is None:
                return out
            out.append(line)

    return asyncio.run(run())


@FUZZ
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"a" * LIMIT, b"a" * (LIMIT + 1)]), max_size=12))
def test_line_reader_splits_any_chunking_of_a_stream_alike(chunks):
    assert read_all(chunks) == expected_lines(b"".join(chunks))
