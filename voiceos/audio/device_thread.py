"""PortAudio calls that can block (opening and closing streams, re-initialising) on one thread of their own.

A sound server that stops answering can leave such a call waiting for ever: seen in CI, where ALSA's pulse plugin
never returned after a failed ``AlsaStart`` during a microphone reopen. Made on the event loop, that call stopped the
whole daemon, its control socket and ``status`` included. Made here, the loop keeps running, can say that the sound
system does not answer, and goes on when the call comes back. Calls run one at a time, in order: PortAudio must not
be re-initialised while another of its calls runs. The thread is a daemon thread, so a call that never returns does
not keep the process from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled by a caller that stopped waiting
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DeviceThread:
    """A worker thread for blocking device calls: :meth:`submit` from the event loop, :meth:`call` from elsewhere."""

    def __init__(self, name: str = "audio-devices") -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.busy_since: float | None = None  # monotonic start of the call running now
        self.current = ""  # its name, for messages
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)  # started by the first call

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self.current, self.busy_since = getattr(fn, "__name__", repr(fn)), time.monotonic()
        try:
            return fn(*args)
        finally:
            self.busy_since = None

    def busy_s(self) -> float:
        """How long the call running now has taken (0 when none runs)."""
        since = self.busy_since
        return time.monotonic() - since if since is not None else 0.0

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on the thread; the returned future (of the running loop) gets its result or exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            result, error = None, None
            try:
                result = self._run(fn, args)
            except BaseException as err:  # handed to the caller, whatever it is
                error = err
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)

        self._put(job)
        return future

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> bool:
        """``fn(*args)`` on the thread, waiting at most ``timeout`` s; False if it did not finish in time (it may
        still finish later). Exceptions are logged, not raised: this is for closing at shutdown."""
        done = threading.Event()

        def job() -> None:
            try:
                self._run(fn, args)
            except Exception as err:
                log.warning("%s failed: %s", getattr(fn, "__name__", fn), err)
            finally:
                done.set()

        self._put(job)
        return done.wait(timeout)

    def _put(self, job: Callable[[], None]) -> None:
        if self._thread.ident is None:  # not started yet
            self._thread.start()
        self._jobs.put(job)

    def stop(self) -> None:
        """End the thread once the calls queued before this one have run."""
        self._jobs.put(None)
