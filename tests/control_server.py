"""The control server on its own event loop, with an in-test handler, for tests/test_control*.py.

The handler is a fake (the protocol and the socket are what is tested); the server runs on its own event loop in a
background thread so the synchronous client and raw sockets can talk to it from the test thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

from voiceos.daemon.bus import EventBus, Subscription
from voiceos.daemon.control import ControlServer
from voiceos.errors import TextInputError


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

    async def memory(self, remove: object = None) -> dict:
        self.calls.append("memory")
        return {"facts": []}

    async def mute(self, muted: bool) -> dict:
        self.calls.append("mute" if muted else "unmute")
        return {"muted": muted, "changed": True}

    async def reminders(self, cancel: object = None) -> dict:
        self.calls.append("reminders")
        return {"reminders": [], "cancelled": None}

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


def wait_until(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
