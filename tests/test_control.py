"""The control socket: JSON-lines protocol, robustness against bad clients, socket files, and the sync client.

The handler is an in-test fake; the server runs on its own event loop in a background thread so the synchronous
client and raw sockets can talk to it from the test thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from voiceos.daemon.bus import EventBus, Subscription
from voiceos.daemon.client import ControlClient, DaemonUnavailable, daemon_running
from voiceos.daemon.control import MAX_LINE_BYTES, ControlServer, control_socket_path, peer_credentials
from voiceos.errors import TextInputError, VoiceosError
from voiceos.events import ReplyDelta, StateChanged


class FakeHandler:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.status_result: dict = {"state": "listening"}
        self.calls: list[str] = []  # the handler methods that ran: bad input must reach none of them

    async def say(self, text: str) -> dict:
        self.calls.append("say")
        if text == "invalid":
            raise TextInputError("text is empty")
        if text == "crash":
            raise RuntimeError("kaboom\nsecond line")
        if text.startswith("sleep"):
            await asyncio.sleep(float(text.split()[1]))
        return {"input": text, "reply": f"you said {text}"}

    async def listen(self, path: str) -> dict:
        self.calls.append("listen")
        return {"transcript": f"heard {path}"}

    def status(self) -> dict:
        self.calls.append("status")
        return self.status_result

    async def interrupt(self) -> dict:
        self.calls.append("interrupt")
        return {"interrupted": False}

    async def reset(self) -> dict:
        self.calls.append("reset")
        return {"reset": True}

    def subscribe(self) -> Subscription:
        self.calls.append("subscribe")
        return self.bus.subscribe(maxsize=8)


class ServerThread:
    """A ControlServer on its own loop in a daemon thread."""

    def __init__(self, path: Path, handler: FakeHandler | None = None, **options) -> None:
        self.path = path
        self.handler = handler or FakeHandler()
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.handler, path, **options)
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


def hung_up(raw: Raw) -> bool:
    """Whether the server closed the connection (a reset when it left our request unread)."""
    try:
        return raw.file.readline() == b""
    except ConnectionResetError:
        return True


@pytest.fixture
def server(short_tmp_dir):
    srv = ServerThread(short_tmp_dir / "run" / "control.sock")
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
    "binary_junk": (bytes(b for b in range(256) if b != 10) * 3, "not valid UTF-8"),
    "nul_bytes": (b"\x00\x00\x00\x00", "not valid JSON"),
    "truncated_json": (b'{"cmd": "say", "text": "hi', "not valid JSON"),
    "deeply_nested": (b'{"cmd": "ping", "id": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    "huge_integer": (b'{"cmd": "ping", "id": ' + b"9" * 100_000 + b"}", "not usable JSON"),
    "lone_surrogate": (b'{"cmd": "say", "text": "\\ud800"}', "unpaired UTF-16 surrogate"),
    "cmd_is_a_list": (b'{"cmd": ["say"], "text": "hi"}', '"cmd"'),
    "listen_path_number": (b'{"cmd": "listen", "path": 3}', '"path"'),
    "say_text_object": (b'{"cmd": "say", "text": {"a": 1}}', '"text"'),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_request_gets_error_reply_and_connection_stays_usable(server, name, caplog):
    data, expected = MALFORMED[name]
    raw = Raw(server.path)
    reply = raw.ask(data + b"\n")
    assert reply["ok"] is False
    assert expected in reply["error"] and "\n" not in reply["error"]
    assert len(reply["error"]) < 300
    assert server.handler.calls == []  # refused before anything ran: nothing changed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # expected, not an internal error
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


def test_fifty_clients_connected_at_once_are_all_answered(server):
    clients = [Raw(server.path) for _ in range(50)]  # all connected before any request is sent
    for n, client in enumerate(clients):
        client.send(json.dumps({"cmd": "say", "text": f"sleep 0.05 #{n}", "id": n}).encode() + b"\n")
    replies = [client.reply() for client in clients]
    assert [r["id"] for r in replies] == list(range(50))
    assert [r["result"]["input"] for r in replies] == [f"sleep 0.05 #{n}" for n in range(50)]
    assert server.handler.calls == ["say"] * 50
    for client in clients:
        client.close()


def test_hostile_client_changes_nothing_for_a_client_mid_conversation(server):
    friend = Raw(server.path)
    assert friend.ask({"cmd": "say", "text": "one", "id": 1})["result"]["input"] == "one"
    hostile = Raw(server.path)
    for data, _ in MALFORMED.values():
        assert hostile.ask(data + b"\n")["ok"] is False
    assert server.handler.calls == ["say"]  # only the friend's request reached the handler
    assert friend.ask({"cmd": "say", "text": "two", "id": 2}) == {
        "ok": True,
        "id": 2,
        "result": {"input": "two", "reply": "you said two"},
    }
    hostile.close()
    friend.close()


def test_client_that_never_reads_its_replies_is_dropped_and_others_are_served(server, caplog):
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.settimeout(10)
    hog.connect(str(server.path))
    request = json.dumps({"cmd": "say", "text": "x" * 500_000}).encode() + b"\n"  # each reply is about 1 MB
    sent = 0
    with (
        caplog.at_level(logging.WARNING, logger="voiceos.daemon.control"),
        pytest.raises((BrokenPipeError, ConnectionResetError)),
    ):
        for sent in range(1, 101):  # up to 100 MB of replies, never read
            hog.sendall(request)
            if sent == 2:  # the hog is connected and unread: others are served all the same
                with ControlClient(server.path, timeout=5) as other:
                    assert other.request("ping")["pong"] is True
    hog.close()
    dropped = [r for r in caplog.records if "does not read its replies" in r.getMessage()]
    assert len(dropped) == 1 and sent < 100
    unsent = dropped[0].args[0]
    limit = server.server.write_buffer_limit
    assert limit < unsent <= limit + len(request) * 2 + 100  # bounded: the limit plus the one reply that passed it
    with ControlClient(server.path, timeout=5) as other:
        assert other.request("say", text="after")["input"] == "after"


def test_event_subscriber_that_never_reads_is_dropped_and_unsubscribed(server, caplog):
    stalled = Raw(server.path)
    assert stalled.ask({"cmd": "events"})["ok"] is True
    wait_until(lambda: server.handler.bus.subscriber_count == 1)
    big = "x" * 50_000

    def publish_some() -> None:
        for _ in range(4):  # below the subscription's queue size: the writer sees every one of them
            server.handler.bus.publish(ReplyDelta(big))

    with caplog.at_level(logging.WARNING, logger="voiceos.daemon.control"):
        for _ in range(1000):  # 200 MB at most, far past the limit
            server.call(publish_some)
            if server.handler.bus.subscriber_count == 0:
                break
        assert server.handler.bus.subscriber_count == 0
        wait_until(lambda: "does not read its replies" in caplog.text)  # logged as the connection ends
    with ControlClient(server.path, timeout=5) as other:
        assert other.request("ping")["pong"] is True
    stalled.close()


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


def test_closing_the_server_ends_event_streams(short_tmp_dir):
    srv = ServerThread(short_tmp_dir / "control.sock")
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


def test_socket_dir_is_0700_and_socket_is_0600_and_removed_on_close(short_tmp_dir):
    directory = short_tmp_dir / "run"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    srv = ServerThread(directory / "control.sock")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    st = os.lstat(srv.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    srv.stop()
    assert not srv.path.exists()


def test_stale_socket_file_is_replaced(short_tmp_dir):
    path = short_tmp_dir / "control.sock"
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


def test_regular_file_in_place_of_the_socket_is_refused(short_tmp_dir):
    path = short_tmp_dir / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(VoiceosError, match="not a socket"):
        asyncio.run(ControlServer(FakeHandler(), path).start())
    assert path.read_text() == "not a socket"


def test_socket_dir_owned_by_another_user_is_refused(short_tmp_dir):
    if os.getuid() == 0:
        directory = short_tmp_dir / "theirs"
        directory.mkdir(mode=0o755)
        os.chown(directory, 65534, 65534)
    else:
        directory = Path("/tmp")  # owned by root
    with pytest.raises(VoiceosError, match="belongs to uid"):
        asyncio.run(ControlServer(FakeHandler(), directory / "control.sock").start())
    assert not (directory / "control.sock").exists()


def test_client_raises_daemon_unavailable_when_no_server(short_tmp_dir):
    path = short_tmp_dir / "nothing" / "control.sock"
    with pytest.raises(DaemonUnavailable, match="no voiceos daemon is running"):
        ControlClient(path, timeout=1).request("ping")
    with pytest.raises(DaemonUnavailable):
        next(ControlClient(path, timeout=1).iter_events())
    assert not daemon_running(path)


# -- who may connect ----------------------------------------------------------------------------------------------


def test_peer_credentials_name_this_process():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert peer_credentials(left) == (os.getpid(), os.getuid(), os.getgid())
    finally:
        left.close()
        right.close()


def test_peer_of_the_daemons_own_uid_is_served(short_tmp_dir):
    srv = ServerThread(short_tmp_dir / "control.sock", allowed_uid=os.getuid())
    try:
        with ControlClient(srv.path, timeout=5) as client:
            assert client.request("status") == {"state": "listening"}
        assert srv.handler.calls == ["status"]
    finally:
        srv.stop()


def test_peer_of_another_uid_is_refused_with_one_line_and_a_warning(short_tmp_dir, caplog):
    other_uid = os.getuid() + 1
    srv = ServerThread(short_tmp_dir / "control.sock", allowed_uid=other_uid)
    try:
        with caplog.at_level(logging.WARNING, logger="voiceos.daemon.control"):
            raw = Raw(srv.path)
            with contextlib.suppress(BrokenPipeError):  # the server may hang up before this is sent
                raw.send(b'{"cmd": "reset", "id": 1}\n')
            reply = raw.reply()
            assert hung_up(raw)
            raw.close()
            with pytest.raises(VoiceosError, match=rf"refused: permission denied: .* not uid {os.getuid()}$"):
                ControlClient(srv.path, timeout=5).request("status")
        assert reply == {
            "ok": False,
            "error": f"permission denied: this voiceos daemon serves uid {other_uid} only, not uid {os.getuid()}",
        }
        assert srv.handler.calls == []  # the reset never ran
        refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert refusals[0] == (
            f"refused a control connection from uid {os.getuid()} (pid {os.getpid()}): only uid {other_uid} may "
            "use this socket"
        )
        assert len(refusals) == 2
    finally:
        srv.stop()


def exchange_as(uid: int, path: Path, request: bytes) -> tuple[int, int, bytes]:
    """Send ``request`` on a connection made by a forked child running as ``uid``; (child pid, status, reply)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(str(path))
            with contextlib.suppress(BrokenPipeError):  # the server may hang up first; its reply is there to read
                sock.sendall(request)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            os.write(write_end, data)
            status = 0
        except BaseException as err:
            os.write(write_end, repr(err).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    return pid, status, data


@pytest.mark.skipif(os.getuid() != 0, reason="connecting as another user needs root")
def test_another_real_user_is_refused_by_its_peer_credentials(short_tmp_dir, caplog):
    srv = ServerThread(short_tmp_dir / "run" / "control.sock")
    try:
        # Open the socket to everyone, as a careless chmod would: only the peer check stands in the way now.
        os.chmod(short_tmp_dir, 0o755)
        os.chmod(srv.path.parent, 0o755)
        os.chmod(srv.path, 0o666)
        with caplog.at_level(logging.WARNING, logger="voiceos.daemon.control"):
            pid, status, data = exchange_as(65534, srv.path, b'{"cmd": "reset", "id": 1}\n')
            wait_until(lambda: "refused" in caplog.text)
        assert status == 0, data
        assert json.loads(data) == {
            "ok": False,
            "error": "permission denied: this voiceos daemon serves uid 0 only, not uid 65534",
        }
        assert srv.handler.calls == []  # the reset never ran
        assert f"refused a control connection from uid 65534 (pid {pid})" in caplog.text
        with ControlClient(srv.path, timeout=5) as client:  # its own user is still served
            assert client.request("reset") == {"reset": True}
    finally:
        srv.stop()


def test_control_socket_path_follows_xdg_runtime_dir(monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1234")
    assert control_socket_path() == Path("/run/user/1234/voiceos/control.sock")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert control_socket_path() == Path(f"/tmp/voiceos-{os.getuid()}/control.sock")
