"""Fan-out of conversation events to asyncio subscribers and plain listeners.

Publishing never blocks and never fails: each subscriber has a bounded queue, and when a slow subscriber's queue is
full its oldest event is dropped (and counted) so the pipeline and the other subscribers go on at full speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from types import TracebackType

from voiceos.events import Event

log = logging.getLogger(__name__)

Listener = Callable[[Event], object]


class Subscription:
    """One subscriber's bounded queue: an async iterator of events that ends when closed.

    Only one task should iterate a subscription. Create it with :meth:`EventBus.subscribe`.
    """

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False  # no more events are accepted
        self._drain = False  # closed by the bus: hand out what is queued, then stop
        self.dropped = 0  # events lost because this subscriber fell behind

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue)

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._maxsize:
            self._queue.popleft()
            self.dropped += 1
            self._bus._dropped += 1
        self._queue.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving: pending events are discarded and iteration ends. Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._bus._unsubscribe(self)
        self._wake()

    def _finish(self) -> None:
        """Close from the bus side: the iterator still yields what is queued, then ends."""
        self._closed = True
        self._drain = True
        self._wake()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when there is none."""
        return self._queue.popleft() if self._queue else None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventBus:
    """Deliver each published :class:`Event` to every subscription and listener.

    ``publish`` must be called on the event loop's thread; other threads (audio callbacks, the LM worker) use
    ``publish_threadsafe``. The loop is ``loop=``, else the loop running when the bus is created or first
    used from a loop (``subscribe``/``publish``), else :meth:`attach_loop`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._remember_loop()
        self._subscriptions: list[Subscription] = []
        self._listeners: list[Listener] = []
        self._dropped = 0
        self._closed = False

    @property
    def dropped(self) -> int:
        """Events dropped across all subscriptions (closed ones included) since the bus was created."""
        return self._dropped

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def attach_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _remember_loop(self) -> None:
        if self._loop is None:
            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_running_loop()

    def subscribe(self, maxsize: int = 256) -> Subscription:
        """A new subscription that receives every event published from now on."""
        self._remember_loop()
        sub = Subscription(self, maxsize)
        if self._closed:
            sub._finish()
        else:
            self._subscriptions.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` synchronously on every publish (keep it quick; exceptions are logged)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber and listener now. Never blocks, never raises."""
        self._remember_loop()
        if self._closed:
            return
        for sub in tuple(self._subscriptions):
            sub._put(event)
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.name)

    def publish_threadsafe(self, event: Event) -> None:
        """``publish`` from any thread: scheduled on the bus's loop. Dropped silently once that loop is closed."""
        loop = self._loop
        if loop is None:
            # No loop has touched the bus yet, so there can be no subscribers: only listeners hear this.
            self.publish(event)
            return
        try:
            loop.call_soon_threadsafe(self.publish, event)
        except RuntimeError:  # the loop is closed: the daemon is shutting down
            log.debug("event %s dropped: event loop closed", event.name)

    def close(self) -> None:
        """End every subscription (after it has yielded what it holds) and refuse further events."""
        self._closed = True
        subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            sub._finish()
