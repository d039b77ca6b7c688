"""The one loaded pipeline behind every Wyoming connection, and the one thread its models run on.

All model work (Whisper, the LM, TTS) goes through a single-worker executor, as in the daemon: on two cores, two
models at once would each run at half speed or worse (their thread pools fight), so requests from different clients
take turns. Synthesis takes its turn one sentence at a time, so a long reply does not hold the others back until it
is all said. The event loop itself never runs a model.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

import numpy as np

from voiceos.asr import Transcript
from voiceos.model_thread import ModelThread
from voiceos.pipeline import Pipeline, TurnResult, clean_text
from voiceos.tts import TtsEngine
from voiceos.wyoming.voices import VoiceCatalog

log = logging.getLogger(__name__)

T = TypeVar("T")
REMEMBERED_REPLIES = 32  # replies whose emotion a later synthesize of the same text picks up


class ModelService:
    """Model work for all connections, one job at a time, off the event loop."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.voices = VoiceCatalog(pipeline)
        self._executor = ModelThread("wyoming")
        # The conversation answers in text: Home Assistant speaks the reply through its own TTS choice (which may be
        # this server's). A shallow copy without the voice shares the LM, the history list and the memory store.
        self._talker = copy.copy(pipeline)
        self._talker.tts = None
        self._reply_emotions: OrderedDict[str, str] = OrderedDict()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on the model thread."""
        return await self._executor.run(fn, *args)

    async def transcribe(self, samples: np.ndarray) -> Transcript:
        assert self.pipeline.transcriber is not None
        return await self.run(self.pipeline.transcriber.transcribe, samples)

    async def reply(self, text: str) -> TurnResult:
        """One conversation turn, remembered in the pipeline's history and memory; raises TextInputError."""
        user_text = clean_text(text, self.pipeline.config.limits.max_text_chars)
        turn = await self.run(self._talker.reply, user_text)
        self._reply_emotions[_key(turn.reply)] = turn.reply_emotion
        while len(self._reply_emotions) > REMEMBERED_REPLIES:
            self._reply_emotions.popitem(last=False)
        return turn

    def reply_emotion(self, text: str) -> str | None:
        """The emotion the conversation chose for a reply of exactly this text (how HA asks to speak it), if any."""
        return self._reply_emotions.get(_key(text))

    async def engine(self, voice: str) -> TtsEngine:
        """The engine of a voice from the catalog, loaded on first use."""
        return await self.run(self.voices.engine, voice)

    async def synthesize(self, engine: TtsEngine, text: str, emotion: str | None) -> AsyncGenerator[np.ndarray, None]:
        """One float32 chunk per sentence, each sentence a separate job on the model thread."""
        sentences = engine.synthesize(text, emotion=emotion)
        try:
            while (chunk := await self.run(next, sentences, None)) is not None:
                yield chunk
        finally:
            # Queued behind the job that may still be running: the generator is never closed while it executes.
            with contextlib.suppress(RuntimeError):  # the server is shutting down
                self._executor.submit(sentences.close)

    def close(self) -> None:
        self._executor.close()


def _key(text: str) -> str:
    return " ".join(text.split())
