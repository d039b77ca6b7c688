"""Small fakes of the pipeline's stages, satisfying the same protocols as the real ones (what the daemon calls on
them), for tests of the daemon's turn logic that take milliseconds. Tests of the stages themselves, and the daemon
tests that stay, run the real models."""

from __future__ import annotations

import threading
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from voiceos.asr import Transcript
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import DialogueOptions
from voiceos.dialogue.types import EmotionHook, GenerationStats, Messages
from voiceos.emotion.labels import EmotionResult

if TYPE_CHECKING:  # the head is a torch module; the fakes never load one
    from voiceos.emotion.head import EmotionHead


def speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise standing for speech: the fakes never listen to it."""
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


class FakeTranscriber:
    """Transcribes by duration: ``script`` maps an utterance's length in samples to its text ("" for none).
    ``gate``, when given, holds every transcription until it is set (to act while ASR is running)."""

    engine = "fake"
    model_name = "script"
    word_times = False
    incremental = False
    languages = ("en",)

    def __init__(self, script: dict[int, str], gate: threading.Event | None = None) -> None:
        self.script, self.gate = script, gate
        self.calls: list[int] = []

    def describe(self) -> str:
        return "a scripted transcriber"

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        self.calls.append(len(samples))
        if self.gate is not None:
            self.gate.wait(10)
        return Transcript(self.script.get(len(samples), ""), "en", len(samples) / SAMPLE_RATE)

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        return self.transcribe(samples)

    def warm(self) -> None:
        pass


class FakeLM:
    """Answers every turn with ``reply``, a few characters per delta, and records what it was asked. With
    ``emotion`` (an EmotionResult) it hands that to ``on_emotion`` first, as a real LM does with its head's reading,
    and records the note it got back. A DialogueBackend (voiceos.dialogue.backend): mypy checks it as one."""

    name = "fake"

    def __init__(self, reply: str = "I hear you. Tell me more.", emotion: EmotionResult | None = None) -> None:
        self.reply, self.emotion = reply, emotion
        self.options = DialogueOptions()
        self.last_stats = GenerationStats()
        self.asked: list[str] = []
        self.notes: list[str | None] = []
        self.resets = 0
        self.head_labels: tuple[str, ...] = ()

    @property
    def has_emotion_head(self) -> bool:
        """Its "head" is the scripted ``emotion``, read out on every turn."""
        return self.emotion is not None

    def attach_emotion_head(self, head: EmotionHead, labels: Sequence[str]) -> None:
        self.head_labels = tuple(labels)  # the scripted reading stands for what the head would say

    def reset(self) -> None:
        self.resets += 1  # nothing cached to forget

    def stream_reply(
        self,
        history: Messages,
        user_text: str,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
        extra_system: str | None = None,
        on_emotion: EmotionHook | None = None,
        use_adapter: bool = True,
    ) -> Generator[str, None, None]:
        self.asked.append(user_text)
        if self.emotion is not None and on_emotion is not None:
            self.notes.append(on_emotion(self.emotion))
        yield from (self.reply[i : i + 5] for i in range(0, len(self.reply), 5))
        self.last_stats = GenerationStats(stop_reason="eos")


class FakeTts:
    """``seconds_per_char`` of quiet tone per character of each sentence, one chunk per sentence."""

    sample_rate = 22_050

    def __init__(self, seconds_per_char: float = 0.01) -> None:
        self.seconds_per_char = seconds_per_char
        self.said: list[str] = []

    def synthesize(self, text: str, emotion=None) -> Generator[np.ndarray, None, None]:
        if not text.strip():
            return
        self.said.append(text)
        n = int(len(text) * self.seconds_per_char * self.sample_rate)
        yield (0.05 * np.sin(np.arange(n) * 2 * np.pi * 220 / self.sample_rate)).astype(np.float32)

    def synthesize_all(self, text: str, emotion=None) -> np.ndarray:
        chunks = list(self.synthesize(text, emotion))
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    def warm(self) -> None:
        pass


def said_of(
    reply: str, user_text: str, name_of_user: str | None = None, *, emotion=None, config=None
) -> tuple[list[str], dict[str, int]]:
    """What the dialogue path says of an LM reply (a FakeLM answering ``reply``; its head reading ``emotion``, if
    given), and what the guards dropped: (sentences said, dropped by guard)."""
    import time

    from voiceos.config import Config
    from voiceos.reply.dialogue import speak_dialogue_reply
    from voiceos.reply.speaker import ReplySpeaker

    config = config or Config()
    speaker = ReplySpeaker(None, config, start=time.perf_counter(), timings={})
    lm = FakeLM(reply, emotion)
    outcome = speak_dialogue_reply(
        lm, config, speaker, history=[], user_text=user_text, system_prompt="", name_of_user=name_of_user
    )
    speaker.finish()
    return speaker.sentences, outcome.dropped
