"""The sd_notify protocol without libsystemd: datagrams to $NOTIFY_SOCKET, and the watchdog settings.

systemd passes NOTIFY_SOCKET (a path, or an abstract name starting with '@') to a Type=notify service; the service
sends newline-separated ``KEY=VALUE`` fields (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``) as one datagram each.
With WatchdogSec= set it also passes WATCHDOG_USEC (and WATCHDOG_PID, the process it is meant for).

Everything here is best effort: outside systemd the notifier is a no-op, and a failed send is logged, never raised,
because a lost status message must not take the daemon down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)

ENV_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"
SEND_TIMEOUT_S = 1.0  # a full queue at the manager blocks sendto(); the event loop must not wait longer than this


class Notifier:
    """Sends sd_notify messages to the socket named by NOTIFY_SOCKET (read once, then removed from the environment).

    ``Notifier()`` reads the process environment; ``Notifier(address)`` uses the given address (for tests);
    ``enabled`` is False when there is no socket, and every method is then a no-op.
    """

    def __init__(self, address: str | None = None, *, unset_environment: bool = True) -> None:
        if address is None:
            address = os.environ.get(ENV_SOCKET) or None
            if unset_environment:
                # Like sd_notify(unset_environment=1): children (ffmpeg, a shell...) must not notify as us.
                os.environ.pop(ENV_SOCKET, None)
        self.address = address
        self._target: str | bytes | None = _socket_target(address) if address else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` fields in one datagram (``send(READY=1, STATUS="up")``); True when it was sent."""
        if self._target is None or not fields:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT_S)
            self._sock.sendto(payload, self._target)
        except OSError as err:
            log.debug("sd_notify to %s failed: %s", self.address, err)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": _one_line(status)} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=_one_line(text))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": _one_line(status)} if status else {}))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC now, in µs), which Type=notify-reload (systemd >= 253)
        requires and older versions ignore. READY=1 ends the reload."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING=1, MONOTONIC_USEC=now_usec, **({"STATUS": _one_line(status)} if status else {}))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start (or stop) timeout fires, e.g. while waiting for a device."""
        return self.send(EXTEND_TIMEOUT_USEC=max(0, int(seconds * 1_000_000)))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from WATCHDOG_USEC, or None when the watchdog is off or meant for another pid.

    As sd_watchdog_enabled(): WATCHDOG_PID, when set, must be this process's pid (the variable is inherited by
    children, which must not ping for their parent).
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get(ENV_WATCHDOG_USEC, "")
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = env.get(ENV_WATCHDOG_PID)
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


async def run_watchdog(notifier: Notifier, interval: float) -> None:
    """Ping WATCHDOG=1 every ``interval / 2`` seconds until cancelled.

    It runs on the event loop on purpose: a loop that is blocked (a stuck model call, a deadlock) stops the pings,
    and systemd then kills and restarts the service.
    """
    period = max(interval / 2, 0.01)
    while True:
        notifier.watchdog()
        await asyncio.sleep(period)


def _socket_target(address: str) -> str | bytes:
    """'@name' is Linux's abstract namespace (a leading NUL byte); anything else is a filesystem path."""
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    return address


def _one_line(text: str) -> str:
    """STATUS= is one line: a newline would start a new (bogus) field."""
    return " ".join(str(text).split())
