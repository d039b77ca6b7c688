"""One Wyoming connection: describe, transcribe (audio in), synthesize (audio out) and conversation turns.

A connection's events are handled in order; its model work waits its turn on the shared :class:`ModelService`, so
one client never blocks another's audio. A request the server cannot serve (an unknown voice, audio in a format
it cannot convert, too much audio) gets an ``error`` event and the connection goes on; an event that cannot even be
read gets an ``error`` too, and the connection is closed unless the stream is still in step (a bad header line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.handle import Handled
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize

from voiceos.pipeline import rounded_timings
from voiceos.privacy import redact
from voiceos.wyoming.audio import AudioFormatError, AudioInput, AudioTooLong
from voiceos.wyoming.events import BadRequest, error_code, parse
from voiceos.wyoming.info import asr_languages, asr_program_name, build_info
from voiceos.wyoming.service import ModelService
from voiceos.wyoming.stream import BoundedReader, Problem
from voiceos.wyoming.tts import speak

log = logging.getLogger(__name__)

MAX_AUDIO_S = 60.0  # audio kept per transcription request (limits.max_audio_s, if lower, wins)
MAX_BAD_EVENTS = 3  # unreadable events a connection may send before it is closed


class WyomingHandler(AsyncEventHandler):
    """The events of one client, in order; what each request needs from the models waits on the model thread."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service: ModelService) -> None:
        self.bounded = BoundedReader(reader)
        super().__init__(self.bounded, writer)  # type: ignore[arg-type]  # it reads as a StreamReader does
        self.service = service
        self.client = _peer(writer)
        config = service.pipeline.config
        self.max_audio_s = min(MAX_AUDIO_S, config.limits.max_audio_s)
        self.show_text = config.privacy.log_transcripts
        self._audio: AudioInput | None = None
        self._dropping = False  # a dropped transcription: its remaining audio is ignored up to audio-stop
        self._bad_events = 0

    async def run(self) -> None:
        """wyoming's loop, plus telling the client what was wrong with an event it could not read."""
        self._is_running = True
        try:
            while self._is_running:
                error: Exception | None = None
                try:
                    event = await async_read_event(self.reader)
                except Exception as err:  # what async_read_event lets through: a cut payload, a header of bad shape
                    event, error = None, err
                if event is None:
                    problem = self.bounded.diagnose(error)
                    if problem is None or not await self._refuse(problem):
                        break
                    continue
                if not await self.handle_event(event):
                    break
        except ConnectionError as err:  # a write to a client that is gone (reset, broken pipe)
            log.info("wyoming client %s went away mid-stream (%s)", self.client, type(err).__name__)
        finally:
            await self.disconnect()
            self.writer.close()

    async def disconnect(self) -> None:
        if self._audio is not None:
            log.info("wyoming client %s left with %.1f s of audio untranscribed", self.client, self._audio.received_s)
        log.debug("wyoming client %s disconnected", self.client)

    async def _refuse(self, problem: Problem) -> bool:
        """Send the error for an unreadable event; whether the connection goes on."""
        self._bad_events += 1
        usable = problem.usable and self._bad_events <= MAX_BAD_EVENTS
        text = problem.text if usable or not problem.usable else f"{problem.text} (too many bad events)"
        log.warning("wyoming client %s: %s; %s", self.client, text, "kept" if usable else "connection closed")
        with contextlib.suppress(ConnectionError, RuntimeError):  # it may be gone already
            await self.write_event(Error(text=text, code=problem.code).event())
        return usable

    async def handle_event(self, event: Event) -> bool:
        try:
            await self._dispatch(event)
        except ConnectionError:
            raise
        except Exception as err:
            code = error_code(err)
            if code is None:
                log.exception("wyoming client %s: %s failed", self.client, event.type)
                code, err = "internal", RuntimeError(f"internal error: {type(err).__name__}")
            else:
                log.info("wyoming client %s: %s refused: %s", self.client, event.type, err)
            await self.write_event(Error(text=str(err)[:500], code=code).event())
        return True

    async def _dispatch(self, event: Event) -> None:
        kind = event.type
        if Describe.is_type(kind):
            await self.write_event(build_info(self.service.pipeline, self.service.voices).event())
        elif Transcribe.is_type(kind):
            self._check_transcribe(parse(Transcribe, event))
            self._audio, self._dropping = AudioInput(self.max_audio_s), False
        elif AudioStart.is_type(kind):
            parse(AudioStart, event)
            if self._audio is None or self._audio.received_s > 0:
                self._audio = AudioInput(self.max_audio_s)
            self._dropping = False
        elif AudioChunk.is_type(kind):
            await self._audio_chunk(parse(AudioChunk, event))
        elif AudioStop.is_type(kind):
            await self._audio_stop()
        elif Synthesize.is_type(kind):
            await self._synthesize(parse(Synthesize, event))
        elif Transcript.is_type(kind):
            await self._converse(parse(Transcript, event))
        elif Ping.is_type(kind):
            await self.write_event(Pong(text=parse(Ping, event).text).event())
        else:
            log.debug("wyoming client %s: %r ignored", self.client, kind)

    # -- speech to text ----------------------------------------------------------------------------------------------
    def _check_transcribe(self, request: Transcribe) -> None:
        pipeline = self.service.pipeline
        if pipeline.transcriber is None:
            raise BadRequest("this server has no speech recognition loaded")
        asr = pipeline.transcriber
        if request.name is not None and request.name not in (asr.model_name, asr_program_name(asr)):
            raise BadRequest(f"unknown ASR model {request.name!r} (this server has {asr.model_name})")
        languages = asr_languages(pipeline)
        if request.language and _base_language(request.language) not in languages:
            raise BadRequest(f"language {request.language!r} is not transcribed here (languages: {languages[:8]})")

    async def _audio_chunk(self, chunk: AudioChunk) -> None:
        if self._dropping:
            return
        if self.service.pipeline.transcriber is None:
            raise BadRequest("this server has no speech recognition loaded")
        if self._audio is None:  # audio without transcribe or audio-start: transcribed all the same
            self._audio = AudioInput(self.max_audio_s)
        try:
            self._audio.add(chunk)
        except (AudioTooLong, AudioFormatError):
            self._audio, self._dropping = None, True
            raise

    async def _audio_stop(self) -> None:
        if self._dropping:
            self._dropping = False
            return
        if self._audio is None:
            raise BadRequest("audio-stop without audio")
        audio, self._audio = self._audio, None
        samples = audio.samples()
        start = time.perf_counter()
        if samples.size:
            transcript = await self.service.transcribe(samples)
            text, language = transcript.text, transcript.language
        else:
            text, language = "", None
        await self.write_event(Transcript(text=text, language=language).event())
        log.info(
            "wyoming client %s: %.1f s of audio -> %s (%.0f ms)",
            self.client,
            audio.received_s,
            redact(text, self.show_text),
            (time.perf_counter() - start) * 1000,
        )

    # -- text to speech ----------------------------------------------------------------------------------------------
    async def _synthesize(self, request: Synthesize) -> None:
        spoken = await speak(self.service, request, self.write_event)
        log.info("wyoming client %s: %s", self.client, spoken)

    # -- conversation ------------------------------------------------------------------------------------------------
    async def _converse(self, request: Transcript) -> None:
        if self.service.pipeline.lm is None:
            raise BadRequest("this server has no dialogue LM loaded")
        if not isinstance(request.text, str):
            raise BadRequest("transcript: text must be a string")
        turn = await self.service.reply(request.text)
        context = {
            "user_emotion": turn.user_emotion,
            "reply_emotion": turn.reply_emotion,
            "timings_ms": rounded_timings(turn.timings_ms),
            **({"error": turn.error} if turn.error else {}),  # the dialogue server failed: the reply is an apology
        }
        await self.write_event(Handled(text=turn.reply, context=context).event())
        log.info(
            "wyoming client %s: turn handled, user %s -> reply %s, %.0f ms",
            self.client,
            turn.user_emotion.get("label"),
            turn.reply_emotion,
            turn.timings_ms.get("total", 0.0),
        )


def _base_language(code: str) -> str:
    return code.replace("_", "-").split("-")[0].lower()


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) or "unix-socket"
