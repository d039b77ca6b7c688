"""A real ``systemd --user`` manager for tests, in its own namespaces (see shared/docs/TESTBED.md).

There is no PID-1 systemd here, so ``systemctl`` alone fails, but a user manager runs in a mount namespace that
looks like a booted system: /run/systemd with ``system/`` (how it knows systemd is init), ``unit-root/`` and the
``inaccessible/`` nodes that PID 1 makes at boot, /run a mount point, and a tmpfs ``/run/user/<uid>`` for its
``XDG_RUNTIME_DIR`` (the notify socket; RuntimeDirectory=; units in ``systemd/user``), and a home under /home
(ProtectHome= covers both). From outside that namespace the runtime directory is reached as
``/proc/<manager pid>/root/run/user/<uid>``, and the home is :attr:`UserManager.home`.

It also gets its own cgroup: the manager takes the cgroup it starts in for its root and moves every process it
finds there into its ``init.scope``; started in the host's root cgroup, that would be every process on the machine.
So it starts in a new child cgroup, inside a cgroup namespace, with a fresh cgroup2 mount showing that child as root.

``UserManager(uid=...)`` runs the manager as an unprivileged user, as on a desktop: sandboxing directives then need
a user namespace (PrivateUsers=). Needs root and systemd; :class:`UserManagerUnavailable` says what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import tty
from pathlib import Path

# Run as ``sh -c SCRIPT sh DROP...`` with SD_* in the environment; DROP is the privilege drop (setpriv ...) or empty.
# With no journald the manager logs to /dev/console, which must be a tty: in the namespace, a pty (SD_CONSOLE).
SHELL_SCRIPT = """\
echo $$ > "$SD_CGROUP/cgroup.procs" || exit 1
exec unshare -m -C --propagation private sh -c '
set -e
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind /run /run
mount --bind "$SD_RUN_SYSTEMD" /run/systemd
mount --bind "$SD_CONSOLE" /dev/console
mkdir -p /run/user
mount -t tmpfs -o mode=0755 tmpfs /run/user
mkdir -m 0700 "$XDG_RUNTIME_DIR"
chown "$SD_UID:$SD_UID" "$XDG_RUNTIME_DIR"
mkdir -p /home
mount -t tmpfs -o mode=0755 tmpfs /home
mkdir "$HOME"
mount --bind "$SD_HOME" "$HOME"
exec "$@" "$SD_SYSTEMD" --user --unit=basic.target --log-target=console' sh "$@"
"""
INNER_HOME = "/home/voiceos-test"
_TOOLS = (
    ("systemctl", "systemd"),
    ("systemd-analyze", "systemd"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
)


class UserManagerUnavailable(RuntimeError):
    """systemd, unshare or root is missing, or the manager does not come up."""


def find_systemd() -> str | None:
    return next((p for p in ("/lib/systemd/systemd", "/usr/lib/systemd/systemd") if os.access(p, os.X_OK)), None)


def missing_requirements() -> list[str]:
    """What keeps a user manager from starting here (empty when nothing does)."""
    problems = [] if find_systemd() else ["the systemd binary (Debian package systemd)"]
    problems += [f"{tool} (Debian package {pkg})" for tool, pkg in _TOOLS if shutil.which(tool) is None]
    if os.geteuid() != 0:
        problems.append("root (for the mount and cgroup namespaces)")
    if _cgroup2_mount() is None:
        problems.append("a mounted cgroup2 file system")
    return problems


class UserManager:
    """One ``systemd --user`` with its own runtime directory, home and cgroup, removed again by :meth:`stop`."""

    def __init__(self, uid: int | None = None) -> None:
        self.uid = uid
        self.root = Path(tempfile.mkdtemp(prefix="voiceos-sd-", dir="/run"))  # not /tmp: PrivateTmp= hides it
        self.root.chmod(0o755)
        self.home = self.root / "home"  # %h, seen by the manager as INNER_HOME
        self.log_path = self.root / "manager.log"
        self.cgroup: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pty: tuple[int, int] | None = None
        self._pump: threading.Thread | None = None

    @property
    def inner_runtime_dir(self) -> str:
        """``XDG_RUNTIME_DIR`` (``%t``) as the manager and its services see it."""
        return f"/run/user/{self.uid or 0}"

    @property
    def runtime_dir(self) -> Path:
        """The runtime directory from outside the manager's mount namespace (a /proc/PID/root path)."""
        pid = self._proc.pid if self._proc is not None else 0
        return Path(f"/proc/{pid}/root{self.inner_runtime_dir}")

    @property
    def unit_dir(self) -> Path:
        return self.runtime_dir / "systemd" / "user"

    @property
    def env(self) -> dict[str, str]:
        """The environment for ``systemctl --user``."""
        drop = ("NOTIFY_SOCKET", "WATCHDOG_", "DBUS_", "XDG_CONFIG_HOME", "SYSTEMD_", "SD_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(XDG_RUNTIME_DIR=str(self.runtime_dir), HOME=str(self.home))
        return env

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        missing = missing_requirements()
        if missing:
            raise UserManagerUnavailable("a systemd user manager for the tests needs " + ", ".join(missing))
        if self.running:
            return
        self.home.mkdir(mode=0o700, exist_ok=True)
        run_systemd = self.root / "run-systemd"
        for name in ("system", "unit-root"):  # unit-root: where a service's mount namespace is put together
            (run_systemd / name).mkdir(parents=True, exist_ok=True)
        _make_inaccessible_nodes(run_systemd / "inaccessible")
        self.cgroup = _create_cgroup(self.root.name)
        if self.uid is not None:
            self.make_own(self.home)
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):  # delegated, as by logind
                os.chown(self.cgroup / name, self.uid, self.uid)
        atexit.register(self.stop)
        env = {
            **self.env,
            "XDG_RUNTIME_DIR": self.inner_runtime_dir,
            "HOME": INNER_HOME,
            "SD_HOME": str(self.home),
            "SD_CGROUP": str(self.cgroup),
            "SD_RUN_SYSTEMD": str(run_systemd),
            "SD_CONSOLE": self._open_console(),
            "SD_UID": str(self.uid or 0),
            "SD_SYSTEMD": find_systemd() or "",
        }
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                ["sh", "-c", SHELL_SCRIPT, "sh", *self._drop_privileges()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        state = ""
        while state not in ("running", "degraded"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise UserManagerUnavailable(
                    f"systemd --user did not reach 'running' (state {state!r}); its log ends with:\n{tail}"
                )
            time.sleep(0.05)
            state = self.systemctl("show", "-p", "SystemState", "--value", check=False).stdout.strip()
        self.unit_dir.mkdir(parents=True, exist_ok=True)
        self.make_own(self.unit_dir.parent, self.unit_dir)

    def stop(self, timeout: float = 10.0) -> None:
        """``systemctl --user exit`` (stops every unit), then SIGKILL what is left; removes the directories."""
        if self.running:
            self.systemctl("exit", check=False, timeout=timeout)
            try:
                assert self._proc is not None
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        if self.cgroup is not None:
            _remove_cgroup(self.cgroup)
            self.cgroup = None
        self._close_console()
        atexit.unregister(self.stop)
        shutil.rmtree(self.root, ignore_errors=True)

    def _open_console(self) -> str:
        """A pty for the manager's /dev/console; a thread appends what it writes to :attr:`log_path`."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no \r\n
        if self.uid is not None:
            os.fchown(slave, self.uid, -1)
        self._pty = (master, slave)  # the slave stays open here, so the master never sees a hangup
        self._pump = threading.Thread(target=self._copy_console, args=(master,), daemon=True)
        self._pump.start()
        return os.ttyname(slave)

    def _copy_console(self, master: int) -> None:
        with open(self.log_path, "ab", buffering=0) as log:
            while self._pty is not None:
                if select.select([master], [], [], 0.1)[0]:
                    try:
                        log.write(os.read(master, 65536))
                    except OSError:
                        return

    def _close_console(self) -> None:
        pty, self._pty = self._pty, None
        if self._pump is not None:
            self._pump.join(timeout=5)
            self._pump = None
        if pty is not None:
            for fd in pty:
                os.close(fd)

    def _kill(self) -> None:
        """SIGKILL the manager and every service it left behind (all of them are in its cgroup)."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)

    def _drop_privileges(self) -> list[str]:
        if self.uid is None:
            return []
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups", "--inh-caps=-all"]

    # -- systemctl helpers ---------------------------------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl --user ARGS`` against this manager; with ``check``, a failure raises with its output."""
        cmd = [*self._drop_privileges(), "systemctl", "--user", "--no-pager", *args]
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-1500:]
            raise AssertionError(
                f"systemctl --user {' '.join(args)} exited {result.returncode}: {result.stderr}\n"
                f"--- the manager's log ends with ---\n{tail}"
            )
        return result

    def install_unit(self, name: str, text: str) -> Path:
        """Write a unit into the manager's unit directory and ``daemon-reload``."""
        path = self.unit_dir / name
        path.write_text(text)
        self.systemctl("daemon-reload")
        return path

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """Unit properties as strings: ``show(unit, "ActiveState", "NRestarts")``."""
        out = self.systemctl("show", unit, *(f"-p{prop}" for prop in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, timeout: float, **expected: str) -> dict[str, str]:
        """Poll until every property has its expected value; returns the last values seen (for messages)."""
        deadline = time.monotonic() + timeout
        while True:
            props = self.show(unit, *expected)
            if all(props.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
                return props
            time.sleep(0.1)

    def make_own(self, *paths: Path) -> None:
        """Give files or directories to the manager's user (a no-op for a root manager)."""
        if self.uid is not None:
            for path in paths:
                os.chown(path, self.uid, self.uid)

    def log_mark(self) -> int:
        """Where the manager's log ends now, for :meth:`log_since`."""
        return self.log_path.stat().st_size

    def log_since(self, mark: int) -> str:
        """What the manager logged after ``mark`` (state changes: "Failed with result 'watchdog'", ...)."""
        with open(self.log_path, "rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def journal(self, unit: str) -> str:
        """No journald here: ``systemctl status`` (the last state changes) and the manager's own log."""
        status = self.systemctl("status", unit, check=False).stdout
        return status + "\n--- manager log ---\n" + self.log_path.read_text(errors="replace")[-3000:]


def edit_unit(text: str, *, replace: dict[str, str] | None = None, add: list[str] | None = None) -> str:
    """Set ``Key=value`` lines of a unit's [Service] section (every existing line of that key is replaced by one),
    and append more lines to it."""
    lines = text.splitlines()
    for key, value in (replace or {}).items():
        hits = [i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}\s*=", line)]
        if hits:
            lines[hits[0]] = f"{key}={value}"
            for i in reversed(hits[1:]):
                del lines[i]
        else:
            lines.insert(lines.index("[Service]") + 1, f"{key}={value}")
    if add:
        index = lines.index("[Service]") + 1
        lines[index:index] = add
    return "\n".join(lines) + "\n"


def _make_inaccessible_nodes(directory: Path) -> None:
    """The mode-0 nodes that ProtectKernelLogs= & co. mount over what they hide (PID 1 makes them at boot)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dir").mkdir(exist_ok=True)
    (directory / "reg").touch()
    for name, kind in (("chr", stat.S_IFCHR), ("blk", stat.S_IFBLK), ("fifo", stat.S_IFIFO)):
        if not (directory / name).exists():
            os.mknod(directory / name, kind, os.makedev(0, 0))
    if not (directory / "sock").exists():
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(directory / "sock"))
    for path in directory.iterdir():
        os.chmod(path, 0)
    directory.chmod(0o755)


def _cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return Path(fields[4])
    return None


def _create_cgroup(name: str) -> Path:
    """A new cgroup2 group below this process's own."""
    mount = _cgroup2_mount()
    assert mount is not None
    cgroups = Path("/proc/self/cgroup").read_text().splitlines()
    own = next((line[3:] for line in cgroups if line.startswith("0::")), "/")
    path = mount / own.lstrip("/") / name
    path.mkdir()
    return path


def _remove_cgroup(path: Path) -> None:
    """Kill what is left in the group, then remove it and its children (deepest first)."""
    with contextlib.suppress(OSError):
        (path / "cgroup.kill").write_text("1")
    for _ in range(50):
        for dirpath, _dirs, _files in os.walk(path, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
        if not path.exists():
            return
        time.sleep(0.1)  # killed processes take a moment to leave their groups
