"""sd_notify without systemd: a datagram socket stands in for the manager's notify socket."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from voiceos.daemon.sdnotify import Notifier, run_watchdog, watchdog_interval

CHILD = """
import os, subprocess, sys
from voiceos.daemon.sdnotify import Notifier
notifier = Notifier()
grandchild = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'))"],
                            capture_output=True, text=True).stdout.strip()
print(notifier.enabled, "NOTIFY_SOCKET" in os.environ, grandchild)
notifier.status("loading\\nmodels")
notifier.extend_timeout(2.5)
notifier.ready()
notifier.watchdog()
notifier.stopping()
notifier.send(ERRNO=5, BUSERROR="org.example.Failed")
"""


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its address (a short path: AF_UNIX paths are limited to 108 bytes)."""
    path = tmp_path / "notify"
    if len(str(path)) > 100:
        path = Path("/tmp") / f"voiceos-notify-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        yield sock, str(path)
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def _run_child(address: str) -> str:
    env = {**os.environ, "NOTIFY_SOCKET": address}
    result = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(4096) for _ in range(count)]


def _drain(sock: socket.socket) -> list[bytes]:
    """Every datagram queued now, without waiting for more."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    received = []
    try:
        while True:
            received.append(sock.recv(4096))
    except BlockingIOError:
        return received
    finally:
        sock.settimeout(timeout)


def test_child_process_sends_each_message_as_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, address = notify_socket
    printed = _run_child(address)
    # Enabled, and NOTIFY_SOCKET gone from the environment: a grandchild cannot notify in the daemon's name.
    assert printed == "True False None"
    assert _receive(sock, 6) == [
        b"STATUS=loading models",
        b"EXTEND_TIMEOUT_USEC=2500000",
        b"READY=1",
        b"WATCHDOG=1",
        b"STOPPING=1",
        b"ERRNO=5\nBUSERROR=org.example.Failed",
    ]


def test_abstract_namespace_address_is_used_without_a_file() -> None:
    name = f"voiceos-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(10)
        assert _run_child(f"@{name}") == "True False None"
        assert sock.recv(4096) == b"STATUS=loading models"


def test_without_notify_socket_every_call_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    results = [notifier.ready(), notifier.status("x"), notifier.watchdog(), notifier.stopping()]
    assert [*results, notifier.extend_timeout(1), notifier.send(READY=1)] == [False] * 6


def test_send_to_a_missing_socket_is_logged_at_debug_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="voiceos.daemon.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
    assert "sd_notify" in caplog.text and "gone" in caplog.text


def test_notifier_given_an_address_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/user/1000/systemd/notify")
    assert Notifier("@other").address == "@other"
    assert os.environ["NOTIFY_SOCKET"] == "/run/user/1000/systemd/notify"
    assert Notifier(unset_environment=False).enabled
    assert "NOTIFY_SOCKET" in os.environ
    assert Notifier().enabled and "NOTIFY_SOCKET" not in os.environ


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}, 5.0),
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for another process
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_reads_watchdog_usec_for_this_pid_only(environ: dict[str, str], expected: float) -> None:
    assert watchdog_interval(environ) == expected


def test_watchdog_interval_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0


def test_watchdog_pings_every_half_interval_and_stop_while_the_loop_is_blocked(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, address = notify_socket
    notifier = Notifier(address)

    async def scenario() -> tuple[int, int, int]:
        task = asyncio.create_task(run_watchdog(notifier, interval=0.2))  # a ping every 0.1 s
        await asyncio.sleep(1.0)
        running = len(_drain(sock))
        time.sleep(1.0)  # a blocked event loop: the only sender is this thread
        blocked = len(_drain(sock))
        await asyncio.sleep(1.0)
        resumed = len(_drain(sock))
        task.cancel()
        return running, blocked, resumed

    running, blocked, resumed = asyncio.run(scenario())
    assert blocked == 0
    # About 10 pings a second; busy CI machines get generous margins.
    assert 3 <= running <= 15 and 3 <= resumed <= 15, (running, resumed)
    notifier.close()
