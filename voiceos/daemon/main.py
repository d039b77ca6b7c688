"""``voiceos run``: load the models, open the audio devices, serve the control socket, talk until stopped.

Start-up order matters to systemd (``Type=notify``): READY=1 is sent only once the models are loaded and the
microphone and speaker are open. While no audio device can be opened the daemon keeps retrying with backoff, says
so in STATUS= and extends the start timeout rather than letting systemd kill and reload it.

A config or model file that cannot be used is permanent: the daemon says why (stderr, STATUS=) and exits with
EX_CONFIG (78), which the unit's RestartPreventExitStatus= keeps systemd from restarting. SIGHUP re-reads the config
(voiceos.daemon.reload).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import time

from voiceos.config import Config
from voiceos.daemon.assistant import Assistant
from voiceos.daemon.bus import EventBus
from voiceos.daemon.commands import ControlCommands
from voiceos.daemon.control import ControlServer, control_socket_path
from voiceos.daemon.reload import Reloader
from voiceos.daemon.sdnotify import Notifier, run_watchdog, watchdog_interval
from voiceos.errors import ConfigError, ModelLoadError, ModelNotFoundError
from voiceos.pipeline import Pipeline
from voiceos.turn import load_end_of_turn

log = logging.getLogger(__name__)

STALL_HOOK_ENV = "VOICEOS_TEST_STALL_AFTER_S"  # tests only: block the event loop this long after READY
EX_CONFIG = 78  # sysexits.h: a config or model file is unusable; restarting cannot help
PERMANENT_ERRORS = (ConfigError, ModelNotFoundError, ModelLoadError)


def run(config: Config, socket_path: str | None = None) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT; returns the exit status."""
    faulthandler.enable()  # the systemd watchdog kills with SIGABRT: the log then shows where the loop hung
    status = asyncio.run(_main(config, socket_path))
    # Everything is closed and saved. Tearing down torch, onnxruntime and PortAudio at interpreter exit takes
    # seconds, and systemd gives a stop TimeoutStopSec: leave now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


async def _main(config: Config, socket_path: str | None) -> int:
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloader = Reloader(config, notifier)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)  # SIGHUP's default action would end the process

    notifier.status("loading models")
    start = time.perf_counter()
    try:
        pipeline = await loop.run_in_executor(None, Pipeline.load, config)
        end_of_turn = await loop.run_in_executor(None, load_end_of_turn, config.turn)
    except PERMANENT_ERRORS as err:
        return _cannot_start(notifier, err)
    log.info("models loaded in %.1f s", time.perf_counter() - start)

    bus = EventBus()
    log.info("end of turn: %s", end_of_turn.describe())
    assistant = Assistant(pipeline, bus, notifier=notifier, end_of_turn=end_of_turn)
    assistant.extra_status["config"] = reloader.status
    commands = ControlCommands(assistant)
    server = ControlServer(commands, socket_path or control_socket_path())
    await server.start()
    log.info("control socket: %s", server.path)

    audio_task = loop.create_task(assistant.audio.run(stop), name="audio")
    alarm_task = loop.create_task(assistant.alarms.run(stop), name="alarms") if assistant.alarms else None
    watchdog_task: asyncio.Task | None = None
    try:
        while not assistant.audio.ready.is_set() and not stop.is_set():
            notifier.extend_timeout(30)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(assistant.audio.ready.wait(), 10)
        if stop.is_set():
            return 0
        notifier.ready()
        reloader.attach(assistant)
        interval = watchdog_interval()
        if interval:
            watchdog_task = loop.create_task(run_watchdog(notifier, interval), name="watchdog")
        devices = commands.status()["devices"]
        print(f"voiceos: listening on {devices['input']}, speaking on {devices['output']} (Ctrl+C to stop)", flush=True)
        how = assistant.turn_start.how_to_talk()
        print(f"voiceos: {how}", flush=True)
        log.info("%s", how)
        stall = os.environ.get(STALL_HOOK_ENV)
        if stall:
            loop.call_later(float(stall), _stall_forever)
        await stop.wait()
        return 0
    finally:
        notifier.stopping()
        log.info("stopping")
        stop.set()
        for task in (watchdog_task, alarm_task, audio_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await server.close()
        await assistant.close()
        log.info("stopped")


def _cannot_start(notifier: Notifier, err: Exception) -> int:
    """A broken config or model file: one line on stderr (the journal) and in STATUS=, then EX_CONFIG."""
    message = " ".join(str(err).split())
    notifier.status(f"failed: {message}")
    print(f"voiceos: error: {message}", file=sys.stderr, flush=True)
    return EX_CONFIG


def _stall_forever() -> None:
    log.warning("%s: blocking the event loop on purpose (watchdog test)", STALL_HOOK_ENV)
    while True:
        time.sleep(3600)
