"""The control socket: JSON-lines protocol, robustness against bad clients, event streams, and the sync client.

Who may connect, and the socket file itself: tests/test_control_access.py. The server: tests/control_server.py.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest
from control_server import Raw, ServerThread, wait_until

from voiceos.daemon.client import ControlClient, DaemonUnavailable, daemon_running
from voiceos.daemon.control import MAX_LINE_BYTES
from voiceos.errors import VoiceosError
from voiceos.events import ReplyDelta, StateChanged


@pytest.fixture
def server(short_tmp_dir):
    srv = ServerThread(short_tmp_dir / "run" / "control.sock")
    yield srv
    srv.stop()


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
