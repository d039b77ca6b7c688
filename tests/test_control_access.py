"""The control socket's files and who may use it: modes, stale and foreign sockets, peer credentials.

The server runs with an in-test handler (tests/control_server.py); the protocol itself: tests/test_control.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from control_server import FakeHandler, Raw, ServerThread, hung_up, wait_until

from voiceos.daemon.client import ControlClient, DaemonUnavailable, daemon_running
from voiceos.daemon.control import ControlServer, control_socket_path, peer_credentials
from voiceos.errors import VoiceosError

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


def test_second_server_on_a_live_socket_is_refused(short_tmp_dir):
    server = ServerThread(short_tmp_dir / "control.sock")
    try:
        second = ControlServer(FakeHandler(), server.path)
        with pytest.raises(VoiceosError, match=r"another voiceos daemon is already running \(socket .*control.sock\)"):
            asyncio.run(second.start())
        with ControlClient(server.path, timeout=5) as client:  # the first one is untouched
            assert client.request("ping")["pong"] is True
    finally:
        server.stop()


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
