"""Speech recognition: faster-whisper behind a small Transcriber class."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from voiceos.config import AsrOptions
from voiceos.errors import ModelNotFoundError
from voiceos.models import DevicePlan, plan_devices, resolve_whisper_model

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration_s: float
    words: tuple[Word, ...] = field(default_factory=tuple)
    elapsed_ms: float = 0.0


FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's own, for asr.temperature_fallback


class Transcriber:
    """Loads one Whisper model and transcribes 16 kHz mono float32 arrays."""

    def __init__(self, model, options: AsrOptions, model_name: str) -> None:
        self._model = model
        self.options = options
        self.model_name = model_name

    @classmethod
    def load(cls, options: AsrOptions, plan: DevicePlan | None = None, cpu_threads: int = 0) -> Transcriber:
        from faster_whisper import WhisperModel

        plan = plan or plan_devices()
        compute_type = plan.whisper_compute_type if options.compute_type == "auto" else options.compute_type
        source = resolve_whisper_model(options.model)
        start = time.perf_counter()
        try:
            model = WhisperModel(
                source,
                device=plan.whisper_device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                download_root=options.download_root,
            )
        except Exception as err:  # faster-whisper raises many kinds (hub errors, ctranslate2 runtime errors)
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelNotFoundError(f"cannot load Whisper model '{options.model}': {first_line}") from None
        log.info(
            "whisper %s loaded on %s/%s in %.2fs",
            options.model,
            plan.whisper_device,
            compute_type,
            time.perf_counter() - start,
        )
        return cls(model, options, options.model)

    @property
    def languages(self) -> list[str]:
        """The languages the model knows (``["en"]`` for the English-only ``.en`` models)."""
        return list(self._model.supported_languages)

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio; silence gives an empty text."""
        start = time.perf_counter()
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        segments, info = self._model.transcribe(
            audio,
            language=self.options.language,
            beam_size=self.options.beam_size,
            temperature=FALLBACK_TEMPERATURES if self.options.temperature_fallback else 0.0,
            vad_filter=False,
            condition_on_previous_text=False,
            word_timestamps=word_timestamps,
        )
        pieces: list[str] = []
        words: list[Word] = []
        for segment in segments:
            pieces.append(segment.text)
            for w in segment.words or ():
                words.append(Word(w.word, w.start, w.end, w.probability))
        text = " ".join(p.strip() for p in pieces if p.strip())
        elapsed = (time.perf_counter() - start) * 1000
        return Transcript(text, info.language, len(audio) / SAMPLE_RATE, tuple(words), elapsed)

    def warm(self) -> None:
        """Run one short decode so the first real request does not pay for lazy initialisation."""
        self.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
