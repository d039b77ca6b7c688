"""The user unit (systemd/voiceos.service) and the service module, checked by systemd itself.

The behaviour tests run the real unit, hardening included, under a real ``systemd --user`` (tests/systemd_manager.py)
with ExecStart swapped for a small Type=notify stand-in that uses voiceos.daemon.sdnotify; the daemon-level tests
run ``python -m voiceos run`` itself once the daemon exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from systemd_manager import UserManager, edit_unit

from voiceos.daemon.network_dropin import DROPIN_NAME, allowed_addresses, render_dropin
from voiceos.daemon.service import install_service, next_steps, quote_exec_arg, render_unit
from voiceos.errors import VoiceosError

MAX_EXPOSURE = 1.1  # `systemd-analyze security --offline=true` on the rendered unit measured 1.1 (systemd 252)
UNIT = "voiceos-standin.service"
REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534

STAND_IN = r"""
import asyncio, json, os, signal, socket, sys, time
from pathlib import Path
from voiceos.daemon.sdnotify import Notifier, run_watchdog, watchdog_interval

def writable(path):
    try:
        Path(path, "probe").write_text("x")
        return True
    except OSError:
        return False

def may_write(path):  # access() says EROFS for a read-only mount, without writing anything
    return os.access(path, os.W_OK)

def inet_allowed():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        return True
    except OSError:
        return False

notifier = Notifier()
extend = bool(os.environ.get("STAND_IN_EXTEND"))
if extend:
    notifier.extend_timeout(3)
runtime = Path(os.environ["RUNTIME_DIRECTORY"])
home = Path(os.environ["HOME"])
probe = {
    "notify_socket_left_in_env": "NOTIFY_SOCKET" in os.environ,
    "watchdog_s": watchdog_interval(),
    "write_cache": writable(os.environ["CACHE_DIRECTORY"]),
    "write_runtime": writable(runtime),
    "write_config": writable(home / ".config" / "voiceos"),
    "write_home": may_write(home),
    "write_usr": may_write("/usr"),
    "tmp_marker_visible": Path(os.environ["STAND_IN_TMP_MARKER"]).exists(),
    "inet_allowed": inet_allowed(),
}
print("probe " + json.dumps(probe), flush=True)
notifier.status("loading (stand-in)")
deadline = time.monotonic() + float(os.environ.get("STAND_IN_START_DELAY", "0"))
while time.monotonic() < deadline:  # like waiting for an audio device: ask for more time, in steps
    if extend:
        notifier.extend_timeout(3)
    time.sleep(0.2)

async def serve():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    if probe["watchdog_s"]:
        asyncio.create_task(run_watchdog(notifier, probe["watchdog_s"]))
    print(f"ready pid={os.getpid()}", flush=True)
    notifier.ready(status="listening (stand-in)")
    stall = runtime / "stall"
    while not stop.is_set():
        if stall.exists():  # the hook: block the event loop once, so the watchdog pings stop
            stall.rename(runtime / "stalled")
            print("stalling", flush=True)
            time.sleep(3600)
        try:
            await asyncio.wait_for(stop.wait(), 0.1)
        except asyncio.TimeoutError:
            pass
    notifier.stopping()
    print("stopped", flush=True)

asyncio.run(serve())
"""


def _analyze(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        ["systemd-analyze", "--user", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# -- the unit file, statically ---------------------------------------------------------------------------------------


def test_rendered_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    unit = tmp_path / "voiceos.service"
    unit.write_text(render_unit())
    result = _analyze("verify", str(unit), tmp_path=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_rendered_unit_security_exposure_stays_low(tmp_path: Path) -> None:
    unit = tmp_path / "voiceos.service"
    unit.write_text(render_unit())
    result = _analyze("security", "--offline=true", "--no-pager", str(unit), tmp_path=tmp_path)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_render_unit_runs_the_given_python_with_specifiers_escaped() -> None:
    assert "ExecStart=/opt/venv/bin/python -m voiceos run\n" in render_unit("/opt/venv/bin/python")
    assert quote_exec_arg("/home/a b/100%/py") == '"/home/a b/100%%/py"'
    with pytest.raises(VoiceosError, match="absolute"):
        render_unit("python3")


def test_install_service_writes_under_xdg_config_home_without_calling_systemctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # systemctl would not be found
    path = install_service()
    assert path == tmp_path / "config" / "systemd" / "user" / "voiceos.service"
    assert path.read_text() == render_unit()
    message = next_steps(path)
    for command in ("systemctl --user daemon-reload", "systemctl --user enable --now voiceos", "journalctl --user"):
        assert command in message


def test_install_service_enable_reports_a_systemctl_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(VoiceosError) as err:
        install_service(tmp_path / "units", enable=True)
    assert str(err.value) == "systemctl --user daemon-reload failed: Failed to connect to bus: No medium found"


# -- the unit under a real user manager, with a stand-in for the daemon ----------------------------------------------


def _stand_in_unit(
    manager: UserManager,
    *,
    replace: dict[str, str] | None = None,
    env: dict[str, str],
    python: str = sys.executable,
) -> Path:
    """Install the real unit with ExecStart swapped for the stand-in; returns the stand-in's output file."""
    script = manager.root / "stand_in.py"
    script.write_text(STAND_IN)
    log = manager.root / f"{UNIT}.log"
    log.write_text("")
    manager.make_own(log)
    env = {"STAND_IN_TMP_MARKER": "/tmp/none", **env}
    unit = edit_unit(
        render_unit(),
        replace={"ExecStart": f"{quote_exec_arg(python)} {script}", **(replace or {})},
        add=[
            f"StandardOutput=append:{log}",
            "StandardError=inherit",
            *(f"Environment={k}={v}" for k, v in env.items()),
        ],
    )
    manager.install_unit(UNIT, unit)
    return log


@pytest.fixture
def manager(systemd_user_manager: UserManager):
    yield systemd_user_manager
    systemd_user_manager.systemctl("stop", UNIT, check=False)
    systemd_user_manager.systemctl("reset-failed", UNIT, check=False)


def test_start_returns_only_after_ready_and_status_text_is_shown(manager: UserManager) -> None:
    log = _stand_in_unit(manager, env={"STAND_IN_START_DELAY": "1.5"})
    started = time.monotonic()
    manager.systemctl("start", UNIT)
    assert time.monotonic() - started >= 1.4  # start waited for READY=1, sent after the delay
    assert "ready pid=" in log.read_text()
    props = manager.show(UNIT, "ActiveState", "SubState", "StatusText", "NRestarts")
    assert props == {
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "listening (stand-in)",
        "NRestarts": "0",
    }


def test_extend_timeout_keeps_a_slow_start_alive_past_timeout_start_sec(manager: UserManager) -> None:
    log = _stand_in_unit(
        manager, replace={"TimeoutStartSec": "3"}, env={"STAND_IN_START_DELAY": "5", "STAND_IN_EXTEND": "1"}
    )
    manager.systemctl("start", UNIT)
    assert manager.show(UNIT, "ActiveState")["ActiveState"] == "active", manager.journal(UNIT)
    assert "ready pid=" in log.read_text()


def _probe(log: Path) -> dict[str, object]:
    line = next(line for line in log.read_text().splitlines() if line.startswith("probe "))
    return json.loads(line.removeprefix("probe "))


EXPECTED_SANDBOX = {
    "notify_socket_left_in_env": False,
    "watchdog_s": 30.0,
    "write_cache": True,
    "write_runtime": True,
    "write_config": True,
    "write_home": False,
    "write_usr": False,
    "tmp_marker_visible": False,
    "inet_allowed": False,
}


def _check_sandbox(manager: UserManager, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
    marker = Path("/tmp") / f"voiceos-sd-marker-{uuid.uuid4().hex}"
    marker.write_text("the service must not see this")
    config = manager.home / ".config" / "voiceos"
    config.mkdir(parents=True, exist_ok=True)
    manager.make_own(config.parent, config)
    try:
        log = _stand_in_unit(manager, env={"STAND_IN_TMP_MARKER": str(marker), **(env or {})}, python=python)
        manager.systemctl("start", UNIT)
        assert _probe(log) == EXPECTED_SANDBOX
    finally:
        marker.unlink()


def test_hardening_leaves_only_cache_config_and_runtime_writable(manager: UserManager) -> None:
    _check_sandbox(manager)


def _python_usable_by(uid: int, env: dict[str, str]) -> str | None:
    """A Python that ``uid`` can run and that imports voiceos.daemon.sdnotify (the venv's may live in /root)."""
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]):
        # Through sh: setpriv's own exec still has root's capabilities, the service's would not.
        drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        check = [*drop, "sh", "-c", 'exec "$0" -c "import voiceos.daemon.sdnotify"', python]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(check, env={**os.environ, **env}, capture_output=True, timeout=30).returncode == 0:
                return python
    return None


def test_hardening_works_under_an_unprivileged_user_manager() -> None:
    """A desktop user's manager has no privileges: the sandbox must come from a user namespace (PrivateUsers=)."""
    env = {"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    python = _python_usable_by(NOBODY, env)
    if python is None:
        pytest.skip(f"no Python here that uid {NOBODY} may run with voiceos importable (the venv's is private)")
    manager = UserManager(uid=NOBODY)
    manager.start()
    try:
        _check_sandbox(manager, python, env)
    finally:
        manager.stop()


def test_watchdog_kills_a_stalled_service_and_restart_brings_it_back(manager: UserManager) -> None:
    log = _stand_in_unit(manager, replace={"WatchdogSec": "2"}, env={})
    manager.systemctl("start", UNIT)
    mark = manager.log_mark()
    (manager.runtime_dir / "voiceos" / "stall").touch()
    props = manager.wait_for(UNIT, 20, NRestarts="1", ActiveState="active", SubState="running")
    assert props == {"NRestarts": "1", "ActiveState": "active", "SubState": "running"}, manager.journal(UNIT)
    output = log.read_text()
    assert output.count("ready pid=") == 2 and "stalling" in output
    # Result=watchdog shows only until the restart; the manager's log keeps it.
    assert f"{UNIT}: Failed with result 'watchdog'" in manager.log_since(mark)


def test_stop_completes_within_two_seconds(manager: UserManager) -> None:
    log = _stand_in_unit(manager, env={})
    manager.systemctl("start", UNIT)
    started = time.monotonic()
    manager.systemctl("stop", UNIT)
    assert time.monotonic() - started < 2.0
    assert manager.show(UNIT, "ActiveState", "Result") == {"ActiveState": "inactive", "Result": "success"}
    assert log.read_text().rstrip().endswith("stopped")


# -- the real daemon under the manager ---------------------------------------------------------------------------------

DAEMON_UNIT = "voiceos.service"


def _daemon_unit(
    manager: UserManager, pulse_server, cache_home: Path | None, env: dict[str, str] | None = None, **replace: str
) -> Path:
    """The real unit, pointed at the test PulseAudio server and the shared model cache; returns its output file.

    The server's socket and config live under /tmp, which PrivateTmp= hides: BindPaths= shows them again.
    """
    log = manager.root / f"{DAEMON_UNIT}.log"
    log.write_text("")
    env = {k: v for k, v in pulse_server.client_env.items() if k != "XDG_RUNTIME_DIR"} | (env or {})  # %t: ours
    add = [f"StandardOutput=append:{log}", "StandardError=inherit", f"BindPaths={pulse_server.root}"]
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
        add.append(f"ReadWritePaths={cache_home}")
    add += [f"Environment={k}={v}" for k, v in env.items()]
    manager.install_unit(DAEMON_UNIT, edit_unit(render_unit(), replace=replace, add=add))
    return log


def _start(manager: UserManager, unit: str, log: Path, timeout: float = 30) -> None:
    """``systemctl start``; a failure shows the service's own output too."""
    result = manager.systemctl("start", unit, check=False, timeout=timeout)
    assert result.returncode == 0, (
        f"{result.stderr}\n{manager.journal(unit)}\n--- {unit} output ---\n{log.read_text()[-3000:]}"
    )


@pytest.mark.audio
def test_sound_server_is_reachable_from_inside_the_sandbox(daemon_manager: UserManager, pulse_server) -> None:
    """PortAudio, in the real unit's sandbox, lists the test server's devices (what the daemon will open)."""
    script = "import sounddevice as sd; print(sorted(d['name'] for d in sd.query_devices()))"
    log = _daemon_unit(
        daemon_manager,
        pulse_server,
        None,
        Type="oneshot",
        WatchdogSec="0",
        ExecStart=f'{quote_exec_arg(sys.executable)} -c "{script}"',
    )
    _start(daemon_manager, DAEMON_UNIT, log, timeout=120)
    output = log.read_text()
    assert "vmic" in output and "vspk" in output, output


@pytest.mark.audio
def test_daemon_service_gets_ready_says_listening_and_stops_within_two_seconds(
    daemon_manager: UserManager, pulse_server, xdg_cache_home: Path
) -> None:
    log = _daemon_unit(daemon_manager, pulse_server, xdg_cache_home)
    _start(daemon_manager, DAEMON_UNIT, log, timeout=330)  # returns on READY=1, after the models load
    props = daemon_manager.show(DAEMON_UNIT, "ActiveState", "SubState", "StatusText")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), log.read_text()[-3000:]
    assert "listening" in props["StatusText"].lower(), props
    assert (daemon_manager.runtime_dir / "voiceos" / "control.sock").exists()
    started = time.monotonic()
    daemon_manager.systemctl("stop", DAEMON_UNIT)
    assert time.monotonic() - started < 2.0
    props = daemon_manager.show(DAEMON_UNIT, "ActiveState", "Result")
    assert props == {"ActiveState": "inactive", "Result": "success"}, log.read_text()[-3000:]


@pytest.mark.audio
def test_daemon_with_a_blocked_event_loop_is_restarted_by_the_watchdog(
    daemon_manager: UserManager, pulse_server, xdg_cache_home: Path
) -> None:
    stall = {"VOICEOS_TEST_STALL_AFTER_S": "3"}
    log = _daemon_unit(daemon_manager, pulse_server, xdg_cache_home, stall, WatchdogSec="5")
    _start(daemon_manager, DAEMON_UNIT, log, timeout=330)
    mark = daemon_manager.log_mark()
    deadline = time.monotonic() + 30  # stalls after 3 s, killed 5 s after the last ping, restarted 2 s later
    expected = f"{DAEMON_UNIT}: Failed with result 'watchdog'"
    while expected not in daemon_manager.log_since(mark) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expected in daemon_manager.log_since(mark), daemon_manager.journal(DAEMON_UNIT) + log.read_text()
    props = daemon_manager.wait_for(DAEMON_UNIT, 10, NRestarts="1")
    assert props["NRestarts"] == "1", daemon_manager.journal(DAEMON_UNIT)


# -- the network drop-in for dialogue.backend: openai ----------------------------------------------------------------


def _openai_config(base_url: str):
    from voiceos.config import Config

    config = Config()
    return dataclasses.replace(
        config, dialogue=dataclasses.replace(config.dialogue, backend="openai", base_url=base_url)
    )


def test_the_embedded_lm_gets_no_network_drop_in_and_a_stale_one_is_removed(tmp_path: Path) -> None:
    from voiceos.config import Config

    units = tmp_path / "units"
    install_service(units, config=_openai_config("http://127.0.0.1:8080/v1"))
    dropin = units / "voiceos.service.d" / DROPIN_NAME
    assert dropin.is_file()
    install_service(units, config=Config())  # back to the embedded LM: sealed again
    assert not dropin.exists() and render_dropin(Config()) is None


@pytest.mark.parametrize(
    ("base_url", "allowed"),
    [
        ("http://127.0.0.1:8080/v1", "127.0.0.1"),
        ("http://localhost:11434/v1", "127.0.0.0/8 ::1/128"),
        ("http://[::1]:8000/v1", "::1"),
        ("https://192.168.1.20/v1", "192.168.1.20"),
    ],
)
def test_the_drop_in_opens_exactly_the_servers_address(base_url: str, allowed: str) -> None:
    text = render_dropin(_openai_config(base_url))
    assert text is not None and f"\nIPAddressAllow={allowed}\n" in text
    assert "\nPrivateNetwork=no\n" in text and "\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n" in text


def test_a_host_name_is_resolved_and_its_name_servers_allowed_too(tmp_path: Path) -> None:
    import socket

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# test\nnameserver 10.0.0.53\noptions edns0\n")
    host = socket.gethostname()  # in /etc/hosts
    addresses = allowed_addresses(f"http://{host}:8080/v1", resolv)
    assert socket.getaddrinfo(host, None)[0][4][0] in addresses and addresses[-1] == "10.0.0.53"
    with pytest.raises(VoiceosError, match=r"cannot resolve no-such-host\.invalid"):
        allowed_addresses("http://no-such-host.invalid/v1", resolv)


def test_the_drop_in_takes_effect_under_a_real_user_manager(manager: UserManager) -> None:
    manager.install_unit(UNIT, render_unit())
    dropin_dir = manager.unit_dir / f"{UNIT}.d"
    dropin_dir.mkdir(exist_ok=True)
    text = render_dropin(_openai_config("http://127.0.0.1:8080/v1"))
    assert text is not None
    (dropin_dir / DROPIN_NAME).write_text(text)
    manager.make_own(dropin_dir, dropin_dir / DROPIN_NAME)
    try:
        manager.systemctl("daemon-reload")
        shown = manager.show(UNIT, "PrivateNetwork", "IPAddressAllow", "IPAddressDeny", "RestrictAddressFamilies")
        assert shown["PrivateNetwork"] == "no"
        assert "127.0.0.1" in shown["IPAddressAllow"] and shown["IPAddressDeny"] != ""
        assert "AF_INET" in shown["RestrictAddressFamilies"]
    finally:
        (dropin_dir / DROPIN_NAME).unlink()
        manager.systemctl("daemon-reload")
    assert manager.show(UNIT, "PrivateNetwork")["PrivateNetwork"] == "yes"
