"""The device thread that takes PortAudio's blocking calls off the event loop, and what the audio loop says while
such a call hangs. A sleeping function stands in for a PortAudio call that does not return (pure logic: the
devices themselves are tested with the real daemon in test_faults.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from voiceos.audio.device_thread import DeviceThread
from voiceos.config import config_from_dict
from voiceos.daemon import audio_loop
from voiceos.daemon.audio_loop import AudioLoop


class StateListener:
    def __init__(self) -> None:
        self.states: list[tuple[str, str]] = []

    def on_speech(self, events, voiced_s, users_voice_s=0.0) -> None:
        pass

    def on_audio_state(self, state: str, detail: str = "") -> None:
        self.states.append((state, detail))


def test_calls_run_in_order_on_one_thread_that_is_not_the_event_loops():
    devices = DeviceThread()

    async def main():
        names = await asyncio.gather(
            *(devices.submit(lambda i=i: (i, threading.current_thread().name)) for i in range(5))
        )
        return names, threading.current_thread().name

    names, loop_thread = asyncio.run(main())
    assert [i for i, _ in names] == [0, 1, 2, 3, 4]
    assert {name for _, name in names} == {"audio-devices"} and loop_thread != "audio-devices"
    devices.stop()


def test_an_exception_in_a_device_call_reaches_the_caller_and_the_thread_goes_on():
    devices = DeviceThread()

    def fails():
        raise OSError("PortAudio error -9996")

    async def main():
        with pytest.raises(OSError, match="-9996"):
            await devices.submit(fails)
        return await devices.submit(lambda: "still working")

    assert asyncio.run(main()) == "still working"
    devices.stop()


def test_a_call_from_outside_the_loop_gives_up_waiting_after_its_timeout():
    devices = DeviceThread()
    release = threading.Event()
    start = time.monotonic()
    assert devices.call(release.wait, timeout=0.2) is False
    assert time.monotonic() - start < 2.0 and devices.busy_s() > 0
    release.set()
    assert devices.call(lambda: None, timeout=5.0) is True
    devices.stop()


def test_a_device_call_that_never_returns_does_not_keep_the_process_from_exiting():
    code = (
        "import threading; from voiceos.audio.device_thread import DeviceThread\n"
        "d = DeviceThread(); d.call(threading.Event().wait, timeout=0.1); print('exiting')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "exiting" in done.stdout, done.stderr


def test_while_a_device_call_hangs_the_loop_runs_on_and_status_says_the_sound_system_does_not_answer(monkeypatch):
    monkeypatch.setattr(audio_loop, "SLOW_DEVICE_CALL_S", 0.3)
    listener = StateListener()
    loop = AudioLoop(config_from_dict({}), 22050, listener)

    def rescan_devices():  # named like the PortAudio call it stands in for
        time.sleep(1.0)
        return "rescanned"

    async def main():
        stop = asyncio.Event()
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        result = await loop._on_device_thread(stop, rescan_devices)
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == "rescanned" and ticks >= 10  # the event loop kept running for the whole second
    assert listener.states and listener.states[0][0] == "no_audio"
    assert "the sound system does not answer (rescan_devices" in listener.states[0][1]
    assert "does not answer" in loop.error
    loop.close()


def test_stopping_the_daemon_does_not_wait_for_a_hung_device_call():
    loop = AudioLoop(config_from_dict({}), 22050, StateListener())
    release = threading.Event()

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        start = time.monotonic()
        with pytest.raises(audio_loop._Stopped):
            await loop._on_device_thread(stop, release.wait)
        return time.monotonic() - start

    assert asyncio.run(main()) < 2.0
    release.set()
    loop.close()
