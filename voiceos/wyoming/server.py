"""The Wyoming server: wyoming's own TCP or Unix-socket server around one loaded pipeline.

Wyoming has no authentication and no encryption: whoever reaches the port can use the models (and hear what the
conversation remembers). It listens on localhost unless told otherwise, and says so when it is told otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from urllib.parse import urlparse

from wyoming.server import AsyncServer

from voiceos.errors import VoiceosError
from voiceos.pipeline import Pipeline
from voiceos.wyoming.handler import WyomingHandler
from voiceos.wyoming.service import ModelService

log = logging.getLogger(__name__)

DEFAULT_URI = "tcp://127.0.0.1:10700"


def check_uri(uri: str) -> str:
    """``uri`` if the server can listen on it (``tcp://HOST:PORT`` or ``unix:///PATH``), else a VoiceosError."""
    try:
        parsed = urlparse(uri)
        port = parsed.port if parsed.scheme == "tcp" else None
    except ValueError as err:
        raise VoiceosError(f"--uri {uri!r}: {err}") from None
    if parsed.scheme == "tcp" and (not parsed.hostname or port is None):
        raise VoiceosError(f"--uri {uri!r}: give a host and a port, e.g. {DEFAULT_URI}")
    if parsed.scheme == "unix" and not parsed.path:
        raise VoiceosError(f"--uri {uri!r}: give a socket path, e.g. unix:///run/user/1000/voiceos/wyoming.sock")
    if parsed.scheme not in ("tcp", "unix"):
        raise VoiceosError(f"--uri {uri!r}: only tcp://HOST:PORT and unix://PATH are served (default {DEFAULT_URI})")
    return uri


def exposure_warning(uri: str) -> str | None:
    """What to warn about when ``uri`` lets other machines in (a non-loopback TCP address), else ``None``."""
    parsed = urlparse(uri)
    host = parsed.hostname or ""
    if parsed.scheme != "tcp" or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to any address
    return (
        f"listening on {host}, not on localhost: Wyoming has no authentication, so anyone who can reach port "
        f"{parsed.port} can use the models and talk to the conversation (and what it remembers)"
    )


class WyomingServer:
    """Serves ASR, TTS and conversation from ``pipeline`` to every client of ``uri``."""

    def __init__(self, pipeline: Pipeline, uri: str = DEFAULT_URI) -> None:
        self.uri = check_uri(uri)
        self.service = ModelService(pipeline)
        self._server = AsyncServer.from_uri(uri)

    def _handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> WyomingHandler:
        return WyomingHandler(reader, writer, self.service)

    def _announce(self) -> None:
        warning = exposure_warning(self.uri)
        if warning:
            log.warning("wyoming: %s", warning)
        pipeline = self.service.pipeline
        served = [
            f"asr ({pipeline.transcriber.describe()})" if pipeline.transcriber is not None else "",
            f"tts ({', '.join(sorted(self.service.voices.profiles))})" if self.service.voices.default else "",
            f"conversation ({pipeline.config.persona.name})" if pipeline.lm is not None else "",
        ]
        log.info("wyoming: serving %s on %s", ", ".join(s for s in served if s), self.uri)

    async def start(self) -> None:
        """Listen without blocking (for tests and embedding); :meth:`stop` ends it."""
        try:
            await self._server.start(self._handler)
        except OSError as err:
            raise VoiceosError(f"cannot listen on {self.uri}: {err.strerror or err}") from None
        self._announce()

    async def run(self) -> None:
        """Listen until SIGTERM (or cancellation, as Ctrl-C does), then close every connection."""
        await self.start()
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        try:
            await stopped.wait()
            log.info("wyoming: SIGTERM, stopping")
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            await self.stop()

    async def stop(self) -> None:
        await self._server.stop()
        self.service.close()


def serve(pipeline: Pipeline, uri: str = DEFAULT_URI) -> int:
    """Run the server in this thread until SIGTERM or Ctrl-C."""
    asyncio.run(WyomingServer(pipeline, uri).run())
    log.info("wyoming: stopped")
    return 0
