"""EventBus: fan-out, bounded queues that drop the oldest event, listeners, thread-safe publishing."""

from __future__ import annotations

import asyncio
import threading

from voiceos.daemon.bus import EventBus
from voiceos.events import ReplyDelta, StateChanged


def test_every_subscriber_receives_every_event_in_order():
    async def main():
        bus = EventBus()
        a, b = bus.subscribe(), bus.subscribe()
        for i in range(3):
            bus.publish(ReplyDelta(str(i)))
        bus.close()
        return [e.text async for e in a], [e.text async for e in b]

    assert asyncio.run(main()) == (["0", "1", "2"], ["0", "1", "2"])


def test_slow_subscriber_drops_oldest_and_does_not_block_publisher_or_others():
    async def main():
        bus = EventBus()
        slow = bus.subscribe(maxsize=4)  # never read while publishing
        fast = bus.subscribe(maxsize=1000)
        received: list[str] = []

        async def read_fast():
            async for event in fast:
                received.append(event.text)

        reader = asyncio.create_task(read_fast())
        for i in range(100):
            bus.publish(ReplyDelta(str(i)))  # synchronous: returns at once whatever the subscribers do
        await asyncio.sleep(0)
        bus.close()
        await asyncio.wait_for(reader, 1)
        kept = [event.text async for event in slow]
        return received, kept, slow.dropped, fast.dropped, bus.dropped

    received, kept, slow_dropped, fast_dropped, total = asyncio.run(main())
    assert received == [str(i) for i in range(100)]
    assert kept == ["96", "97", "98", "99"]
    assert (slow_dropped, fast_dropped, total) == (96, 0, 96)


def test_waiting_subscriber_wakes_on_publish():
    async def main():
        bus = EventBus()
        sub = bus.subscribe()
        waiter = asyncio.create_task(sub.__anext__())
        await asyncio.sleep(0)
        assert not waiter.done()
        bus.publish(StateChanged("listening"))
        return await asyncio.wait_for(waiter, 1)

    assert asyncio.run(main()).state == "listening"


def test_closed_subscription_ends_iteration_and_stops_receiving():
    async def main():
        bus = EventBus()
        async with bus.subscribe() as sub:
            bus.publish(ReplyDelta("a"))
            assert bus.subscriber_count == 1
        assert sub.closed and bus.subscriber_count == 0
        bus.publish(ReplyDelta("b"))
        return [e async for e in sub]

    assert asyncio.run(main()) == []


def test_close_wakes_a_waiting_iterator():
    async def main():
        bus = EventBus()
        sub = bus.subscribe()

        async def drain():
            return [e async for e in sub]

        task = asyncio.create_task(drain())
        await asyncio.sleep(0)
        sub.close()
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(main()) == []


def test_listeners_are_called_synchronously_and_a_failing_one_is_contained(caplog):
    bus = EventBus()
    seen: list[str] = []

    def broken(event):
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda event: seen.append(event.name))
    bus.publish(StateChanged("thinking"))
    bus.remove_listener(broken)
    bus.publish(ReplyDelta("x"))
    assert seen == ["state", "reply_delta"]
    assert "listener bug" in caplog.text


def test_publish_threadsafe_from_other_threads_reaches_subscribers():
    async def main():
        bus = EventBus()
        sub = bus.subscribe()

        def worker(n):
            for i in range(50):
                bus.publish_threadsafe(ReplyDelta(f"{n}:{i}"))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        events = [await asyncio.wait_for(sub.__anext__(), 2) for _ in range(200)]
        for t in threads:
            t.join()
        return [e.text for e in events]

    texts = asyncio.run(main())
    assert sorted(texts) == sorted(f"{n}:{i}" for n in range(4) for i in range(50))
    for n in range(4):  # each thread's events keep their order
        assert [t for t in texts if t.startswith(f"{n}:")] == [f"{n}:{i}" for i in range(50)]


def test_publish_threadsafe_after_loop_closed_is_silently_dropped():
    async def main():
        bus = EventBus()
        bus.subscribe()
        return bus

    bus = asyncio.run(main())
    bus.publish_threadsafe(ReplyDelta("late"))  # must not raise


def test_subscribe_after_bus_closed_yields_nothing():
    async def main():
        bus = EventBus()
        bus.close()
        sub = bus.subscribe()
        bus.publish(ReplyDelta("x"))
        return [e async for e in sub]

    assert asyncio.run(main()) == []
