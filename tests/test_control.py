"""The control socket: JSON-lines protocol, robustness against bad clients, socket files, and the sync client.

The handler is an in-test fake; the server runs on its own event loop in a background thread so the synchronous
client and raw sockets can talk to it from the test thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest

from voiceos.daemon.bus import EventBus, Subscription
from voiceos.daemon.client import ControlClient, DaemonUnavailable, daemon_running
from voiceos.daemon.control import MAX_LINE_BYTES, ControlServer, control_socket_path
from voiceos.errors import TextInputError, VoiceosError
from voiceos.events import ReplyDelta, StateChanged


class FakeHandler:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.status_result: dict = {"state": "listening"}

    async def say(self, text: str) -> dict:
        if text == "invalid":
            raise TextInputError("text is empty")
        if text == "crash":
            raise RuntimeError("kaboom\nsecond line")
        if text.startswith("sleep"):
            await asyncio.sleep(float(text.split()[1]))
        return {"input": text, "reply": f"you said {text}"}

    async def listen(self, path: str) -> dict:
        return {"transcript": f"heard {path}"}

    def status(self) -> dict:
        return self.status_result

    async def interrupt(self) -> dict:
        return {"interrupted": False}

    async def reset(self) -> dict:
        return {"reset": True}

    def subscribe(self) -> Subscription:
        return self.bus.subscribe(maxsize=8)


class ServerThread:
    """A ControlServer on its own loop in a daemon thread."""

    def __init__(self, path: Path, handler: FakeHandler | None = None) -> None:
        self.path = path
        self.handler = handler or FakeHandler()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.handler, path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self.server.start())
        self.handler.bus.attach_loop(self.loop)

    def run(self, coro, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        async def wrapper():
            return fn(*args)

        return self.run(wrapper())

    def stop(self) -> None:
        """Close the server and its loop; fail if close() left any task running."""
        self.run(self.server.close())

        async def other_tasks():
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        left = self.run(other_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        assert not left, f"tasks still running after close(): {left}"


class Raw:
    """A bare socket for sending arbitrary bytes and reading reply lines."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> dict:
        line = self.file.readline()
        assert line.endswith(b"\n"), f"connection closed, got {line!r}"
        return json.loads(line)

    def ask(self, obj: dict | bytes) -> dict:
        self.send(obj if isinstance(obj, bytes) else json.dumps(obj).encode() + b"\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def sock_dir():
    """A short directory under /tmp (AF_UNIX paths are limited to 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="vo-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(sock_dir):
    srv = ServerThread(sock_dir / "run" / "control.sock")
    yield srv
    srv.stop()


def wait_until(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- protocol -----------------------------------------------------------------------------------------------------


def test_each_command_round_trips_through_the_client(server):
    with ControlClient(server.path, timeout=5) as client:
        assert client.request("ping")["pong"] is True
        assert client.request("say", text="hello") == {"input": "hello", "reply": "you said hello"}
        assert client.request("listen", path="/x.wav") == {"transcript": "heard /x.wav"}
        assert client.request("status") == {"state": "listening"}
        assert client.request("interrupt") == {"interrupted": False}
        assert client.request("reset") == {"reset": True}
    assert daemon_running(server.path)


def test_request_id_is_echoed_and_left_out_when_not_sent(server):
    raw = Raw(server.path)
    assert raw.ask({"cmd": "status", "id": "abc"}) == {"ok": True, "id": "abc", "result": {"state": "listening"}}
    assert raw.ask({"cmd": "ping", "id": 7})["id"] == 7
    assert raw.ask({"cmd": "dance", "id": 8})["id"] == 8  # echoed on errors too
    assert raw.ask({"cmd": "say", "id": [1], "text": "invalid"}) == {"ok": False, "id": [1], "error": "text is empty"}
    assert "id" not in raw.ask({"cmd": "status"})
    raw.close()


def test_pipelined_requests_are_answered_in_order(server):
    raw = Raw(server.path)
    raw.send(b"".join(json.dumps(r).encode() + b"\n" for r in [
        {"cmd": "say", "text": "sleep 0.2", "id": 1},
        {"cmd": "ping", "id": 2},
        {"cmd": "say", "text": "sleep 0.05", "id": 3},
        {"cmd": "status", "id": 4},
    ]))  # fmt: skip
    assert [raw.reply()["id"] for _ in range(4)] == [1, 2, 3, 4]
    raw.close()


MALFORMED = {
    "not_json": (b"hello there", "not valid JSON"),
    "not_an_object": (b"[1, 2]", "must be a JSON object"),
    "json_string": (b'"say"', "must be a JSON object"),
    "missing_cmd": (b'{"text": "hi"}', '"cmd"'),
    "cmd_not_string": (b'{"cmd": 5}', '"cmd"'),
    "unknown_cmd": (b'{"cmd": "dance"}', "unknown command 'dance'"),
    "say_without_text": (b'{"cmd": "say"}', '"text"'),
    "say_text_not_string": (b'{"cmd": "say", "text": 5}', '"text"'),
    "listen_path_null": (b'{"cmd": "listen", "path": null}', '"path"'),
    "not_utf8": (b'{"cmd": "say", "text": "\xff\xfe"}', "not valid UTF-8"),
    "truncated_json": (b'{"cmd": "say", "text": "hi', "not valid JSON"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_request_gets_error_reply_and_connection_stays_usable(server, name):
    data, expected = MALFORMED[name]
    raw = Raw(server.path)
    reply = raw.ask(data + b"\n")
    assert reply["ok"] is False
    assert expected in reply["error"] and "\n" not in reply["error"]
    assert raw.ask({"cmd": "ping", "id": "after"})["result"]["pong"] is True
    raw.close()


def test_requests_sent_before_a_half_close_are_all_answered(server):
    raw = Raw(server.path)
    raw.send(b'{"cmd": "say", "text": "sleep 0.05", "id": 1}\n{"cmd": "ping", "id": 2}')  # last line: no newline
    raw.sock.shutdown(socket.SHUT_WR)  # as `printf ... | nc -N -U` does
    assert [raw.reply()["id"], raw.reply()["id"]] == [1, 2]
    assert raw.file.readline() == b""  # then the server closes
    raw.close()


def test_blank_lines_are_ignored(server):
    raw = Raw(server.path)
    assert raw.ask(b"\n  \n" + b'{"cmd": "ping", "id": 1}\n')["id"] == 1
    raw.close()


def test_over_long_line_gets_error_reply_and_connection_stays_usable(server):
    raw = Raw(server.path)
    sender = threading.Thread(target=raw.send, args=(b"x" * (MAX_LINE_BYTES + 5000) + b"\n",))
    sender.start()  # the server replies while we are still sending: read concurrently
    reply = raw.reply()
    sender.join(5)
    assert reply["ok"] is False and "longer than" in reply["error"]
    assert raw.ask({"cmd": "ping", "id": 1})["id"] == 1
    raw.close()


def test_line_of_exactly_the_limit_is_accepted(server):
    prefix, suffix = b'{"cmd": "say", "text": "', b'"}'
    line = prefix + b"a" * (MAX_LINE_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(line) == MAX_LINE_BYTES
    raw = Raw(server.path)
    reply = raw.ask(line + b"\n")
    assert reply["ok"] is True and len(reply["result"]["input"]) > 1_000_000
    raw.close()


def test_voiceos_error_from_handler_is_replied_with_its_message(server):
    with ControlClient(server.path, timeout=5) as client:
        with pytest.raises(VoiceosError, match=r"^text is empty$") as info:
            client.request("say", text="invalid")
        assert not isinstance(info.value, DaemonUnavailable)
        assert client.request("ping")["pong"] is True  # the same connection goes on


def test_handler_exception_gives_internal_error_and_server_survives(server, caplog):
    raw = Raw(server.path)
    with caplog.at_level(logging.ERROR, logger="voiceos.daemon.control"):
        reply = raw.ask({"cmd": "say", "text": "crash", "id": 1})
    assert reply == {"ok": False, "id": 1, "error": "internal error: RuntimeError: kaboom"}
    assert "Traceback" in caplog.text and "second line" in caplog.text
    assert raw.ask({"cmd": "ping"})["ok"] is True
    with ControlClient(server.path, timeout=5) as other:
        assert other.request("status") == {"state": "listening"}
    raw.close()


def test_unserializable_handler_result_gives_internal_error(server):
    server.handler.status_result = {"when": object()}
    with ControlClient(server.path, timeout=5) as client:
        with pytest.raises(VoiceosError, match="internal error: TypeError"):
            client.request("status")
        assert client.request("ping")["pong"] is True


def test_many_concurrent_clients_are_served(server):
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with ControlClient(server.path, timeout=5) as client:
                for i in range(5):
                    assert client.request("say", text=f"{n}-{i}")["input"] == f"{n}-{i}"
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert failures == []


# -- events -------------------------------------------------------------------------------------------------------


def test_events_stream_to_two_clients_while_a_third_sends_garbage(server):
    raw = Raw(server.path)
    assert raw.ask({"cmd": "events", "id": "ev"}) == {"ok": True, "id": "ev", "result": {"subscribed": True}}
    client_events = ControlClient(server.path, timeout=5).iter_events()
    received: list[dict] = []
    reader = threading.Thread(target=lambda: received.extend(next(client_events) for _ in range(2)))
    reader.start()
    wait_until(lambda: server.handler.bus.subscriber_count == 2)

    garbage = Raw(server.path)
    for data in (b"\xff\xff\n", b"{]\n", b'{"cmd": "nope"}\n'):
        assert garbage.ask(data)["ok"] is False
    server.handler.bus.publish_threadsafe(StateChanged("thinking"))
    assert garbage.ask({"cmd": "ping"})["ok"] is True
    server.handler.bus.publish_threadsafe(ReplyDelta("Hello"))

    first, second = raw.reply(), raw.reply()
    assert first["event"] == "state" and first["state"] == "thinking" and isinstance(first["t"], float)
    assert second["event"] == "reply_delta" and second["text"] == "Hello"
    reader.join(5)
    assert [e["event"] for e in received] == ["state", "reply_delta"]
    client_events.close()
    raw.close()
    garbage.close()
    wait_until(lambda: server.handler.bus.subscriber_count == 0)


def test_client_disconnecting_mid_events_stream_unsubscribes_quietly(server, caplog):
    raw = Raw(server.path)
    raw.ask({"cmd": "events"})
    for i in range(5):
        server.handler.bus.publish_threadsafe(ReplyDelta(f"chunk {i}" * 100))
    raw.sock.shutdown(socket.SHUT_RDWR)
    raw.close()
    for i in range(5):
        server.handler.bus.publish_threadsafe(ReplyDelta(f"late {i}"))
    wait_until(lambda: server.handler.bus.subscriber_count == 0)
    with ControlClient(server.path, timeout=5) as client:
        assert client.request("ping")["pong"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_client_disconnecting_before_its_reply_does_not_disturb_server(server, caplog):
    raw = Raw(server.path)
    raw.send(b'{"cmd": "say", "text": "sleep 0.1"}\n')
    raw.close()
    time.sleep(0.2)
    with ControlClient(server.path, timeout=5) as client:
        assert client.request("say", text="again")["input"] == "again"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_slow_event_subscriber_does_not_block_publisher_or_other_clients(server):
    stalled = Raw(server.path)  # subscribes and then never reads
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.ask({"cmd": "events"})
    big = "x" * 4000

    def publish_many():
        for _ in range(2000):  # ~8 MB: far more than the socket buffers hold
            server.handler.bus.publish(ReplyDelta(big))

    start = time.monotonic()
    server.call(publish_many)
    assert time.monotonic() - start < 2.0
    with ControlClient(server.path, timeout=5) as client:
        assert client.request("ping")["pong"] is True
    assert server.handler.bus.dropped > 0
    stalled.close()


def test_closing_the_server_ends_event_streams(sock_dir):
    srv = ServerThread(sock_dir / "control.sock")
    events = ControlClient(srv.path, timeout=5).iter_events()
    received: list[dict] = []
    reader = threading.Thread(target=lambda: received.extend(events))
    reader.start()
    wait_until(lambda: srv.handler.bus.subscriber_count == 1)
    srv.handler.bus.publish_threadsafe(StateChanged("speaking"))
    wait_until(lambda: len(received) == 1)
    srv.stop()
    reader.join(5)
    assert not reader.is_alive()
    assert [e["state"] for e in received] == ["speaking"]


# -- socket files -------------------------------------------------------------------------------------------------


def test_socket_dir_is_0700_and_socket_is_0600_and_removed_on_close(sock_dir):
    directory = sock_dir / "run"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    srv = ServerThread(directory / "control.sock")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    st = os.lstat(srv.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    srv.stop()
    assert not srv.path.exists()


def test_stale_socket_file_is_replaced(sock_dir):
    path = sock_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a socket file nobody listens on, as a crashed daemon leaves it
    dead.close()
    with pytest.raises(DaemonUnavailable):
        ControlClient(path, timeout=5).request("ping")
    srv = ServerThread(path)
    try:
        with ControlClient(path, timeout=5) as client:
            assert client.request("ping")["pong"] is True
    finally:
        srv.stop()


def test_second_server_on_a_live_socket_is_refused(server):
    second = ControlServer(FakeHandler(), server.path)
    with pytest.raises(VoiceosError, match=r"another voiceos daemon is already running \(socket .*control.sock\)"):
        asyncio.run(second.start())
    with ControlClient(server.path, timeout=5) as client:  # the first one is untouched
        assert client.request("ping")["pong"] is True


def test_regular_file_in_place_of_the_socket_is_refused(sock_dir):
    path = sock_dir / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(VoiceosError, match="not a socket"):
        asyncio.run(ControlServer(FakeHandler(), path).start())
    assert path.read_text() == "not a socket"


def test_socket_dir_owned_by_another_user_is_refused(sock_dir):
    if os.getuid() == 0:
        directory = sock_dir / "theirs"
        directory.mkdir(mode=0o755)
        os.chown(directory, 65534, 65534)
    else:
        directory = Path("/tmp")  # owned by root
    with pytest.raises(VoiceosError, match="belongs to uid"):
        asyncio.run(ControlServer(FakeHandler(), directory / "control.sock").start())
    assert not (directory / "control.sock").exists()


def test_client_raises_daemon_unavailable_when_no_server(sock_dir):
    path = sock_dir / "nothing" / "control.sock"
    with pytest.raises(DaemonUnavailable, match="no voiceos daemon is running"):
        ControlClient(path, timeout=1).request("ping")
    with pytest.raises(DaemonUnavailable):
        next(ControlClient(path, timeout=1).iter_events())
    assert not daemon_running(path)


def test_control_socket_path_follows_xdg_runtime_dir(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert control_socket_path() == Path("/run/user/1234/voiceos/control.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert control_socket_path() == Path(f"/tmp/voiceos-{os.getuid()}/control.sock")
