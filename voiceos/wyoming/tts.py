"""``synthesize``: the voice and emotion a request asks for, and its audio streamed back as each sentence is ready."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.tts import Synthesize

from voiceos.pipeline import clean_text
from voiceos.wyoming.audio import WIDTH, pcm_chunks
from voiceos.wyoming.events import BadRequest
from voiceos.wyoming.service import ModelService


@dataclass(frozen=True)
class Spoken:
    """What one synthesize request produced, for the log."""

    voice: str
    emotion: str
    sentences: int
    seconds: float
    first_audio_ms: float
    total_ms: float

    def __str__(self) -> str:
        return (
            f"synthesized {self.sentences} sentence(s), {self.seconds:.1f} s, voice {self.voice}/{self.emotion}; "
            f"first audio {self.first_audio_ms:.0f} ms, all {self.total_ms:.0f} ms"
        )


async def speak(service: ModelService, request: Synthesize, write: Callable[[Event], Awaitable[None]]) -> Spoken:
    """audio-start, 16-bit mono chunks of ~0.1 s per sentence as it is synthesized, audio-stop.

    The emotion is the speaker the request names (one of the voice's emotions), else the one the conversation chose
    for a reply of this very text (Home Assistant speaks the handled text through its TTS), else neutral.
    """
    if not isinstance(request.text, str):
        raise BadRequest("synthesize: text must be a string")
    if request.text_format not in (None, "text"):
        fmt = getattr(request.text_format, "value", request.text_format)
        raise BadRequest(f"synthesize: text_format {fmt!r} is not supported (plain text only)")
    voice = request.voice
    name, profile = service.voices.profile(voice.name if voice is not None else None)
    emotion = service.voices.emotion(profile, voice.speaker if voice is not None else None)
    emotion = emotion or service.reply_emotion(request.text)
    text = clean_text(request.text, service.pipeline.config.limits.max_text_chars)
    engine = await service.engine(name)
    rate, start = engine.sample_rate, time.perf_counter()
    await write(AudioStart(rate=rate, width=WIDTH, channels=1, timestamp=0).event())
    timestamp, first_ms, sentences = 0, 0.0, 0
    async with contextlib.aclosing(service.synthesize(engine, text, emotion)) as stream:
        async for samples in stream:
            sentences += 1
            first_ms = first_ms or (time.perf_counter() - start) * 1000
            for pcm in pcm_chunks(samples, rate):
                chunk = AudioChunk(rate=rate, width=WIDTH, channels=1, audio=pcm, timestamp=timestamp)
                await write(chunk.event())
                timestamp += chunk.milliseconds
    await write(AudioStop(timestamp=timestamp).event())
    total_ms = (time.perf_counter() - start) * 1000
    return Spoken(name, emotion or "neutral", sentences, timestamp / 1000, first_ms, total_ms)
