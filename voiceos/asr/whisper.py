"""Whisper through faster-whisper (``asr.engine: whisper``): the embedded tiny.en, or any model faster-whisper loads.

One greedy pass at temperature 0 per clip (``asr.beam_size`` 1). A pass that loops (:mod:`voiceos.asr.loops`) is
decoded again with faster-whisper's temperature fallback (``asr.loop_guard``), so only the clips that need it pay
for a second pass; ``asr.temperature_fallback`` instead lets faster-whisper re-decode every clip it finds doubtful
(a low log-probability too, which noisy speech gives and a second pass rarely fixes: benchmarks/asr_tail.py).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from voiceos.asr.loops import COMPRESSION_RATIO_MAX, loop_reason
from voiceos.asr.types import Transcript, Word
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import AsrOptions
from voiceos.errors import ModelNotFoundError
from voiceos.models import EMBEDDED_WHISPER, AsrPlan, resolve_whisper_model

log = logging.getLogger(__name__)

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's own, for asr.temperature_fallback
REDECODE_TEMPERATURES = FALLBACK_TEMPERATURES[1:]  # the loop guard's second pass (the first was at 0)


class WhisperTranscriber:
    """Loads one Whisper model and transcribes 16 kHz mono float32 arrays."""

    engine = "whisper"
    word_times = True
    incremental = False  # every call encodes a 30 s window

    def __init__(self, model, options: AsrOptions, model_name: str, plan: AsrPlan | None = None) -> None:
        self.model = model
        self.options = options
        self.model_name = model_name
        self.plan = plan

    @classmethod
    def load(cls, options: AsrOptions, plan: AsrPlan) -> WhisperTranscriber:
        from faster_whisper import WhisperModel

        compute_type = plan.compute_type if options.compute_type == "auto" else options.compute_type
        source = resolve_whisper_model(options.model)
        start = time.perf_counter()
        try:
            model = WhisperModel(
                source,
                device=plan.device,
                compute_type=compute_type,
                cpu_threads=plan.threads,
                download_root=options.download_root,
            )
        except Exception as err:  # faster-whisper raises many kinds (hub errors, ctranslate2 runtime errors)
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelNotFoundError(f"cannot load Whisper model '{options.model}': {first_line}") from None
        log.info(
            "whisper %s loaded on %s/%s in %.2fs", options.model, plan.device, compute_type, time.perf_counter() - start
        )
        return cls(model, options, EMBEDDED_WHISPER if options.model == "auto" else options.model, plan)

    @property
    def languages(self) -> list[str]:
        """The languages the model knows (``["en"]`` for the English-only ``.en`` models)."""
        return list(self.model.supported_languages)

    def describe(self) -> str:
        where = f" on {self.plan.device}/{self.plan.compute_type}" if self.plan is not None else ""
        name = f"{EMBEDDED_WHISPER}, embedded" if self.model_name == EMBEDDED_WHISPER else self.model_name
        return f"Whisper {name} (faster-whisper){where}"

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio; silence gives an empty text."""
        start = time.perf_counter()
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        duration = len(audio) / SAMPLE_RATE
        options = self.options
        fallback = options.temperature_fallback
        temperatures = FALLBACK_TEMPERATURES if fallback else 0.0
        text, words, language, confidence = self._decode(audio, word_timestamps, temperatures)
        looped = False
        if options.loop_guard and not fallback and (why := loop_reason(text, duration)):
            again = self._decode(audio, word_timestamps, REDECODE_TEMPERATURES, loops_only=True)
            log.info("whisper: the decode looped (%s); decoded again at temperatures %s", why, REDECODE_TEMPERATURES)
            if loop_reason(again[0], duration) is None or len(again[0]) < len(text):
                text, words, _, confidence = again
            looped = True
        elapsed = (time.perf_counter() - start) * 1000
        return Transcript(text, language, duration, tuple(words), elapsed, looped, confidence)

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        return self.transcribe(samples)

    def _decode(
        self, audio: np.ndarray, word_timestamps: bool, temperature, *, loops_only: bool = False
    ) -> tuple[str, list[Word], str, float | None]:
        segments, info = self.model.transcribe(
            audio,
            language=self.options.language,
            beam_size=self.options.beam_size,
            temperature=temperature,
            # the loop guard's pass falls back to a higher temperature only on a loop, not on a doubtful log-prob
            log_prob_threshold=None if loops_only else -1.0,
            compression_ratio_threshold=COMPRESSION_RATIO_MAX,
            vad_filter=False,
            condition_on_previous_text=False,
            word_timestamps=word_timestamps,
        )
        pieces: list[str] = []
        words: list[Word] = []
        logprobs: list[float] = []
        for segment in segments:
            pieces.append(segment.text)
            logprobs.append(segment.avg_logprob)
            for w in segment.words or ():
                words.append(Word(w.word, w.start, w.end, w.probability))
        confidence = float(np.mean(logprobs)) if logprobs else None
        return " ".join(p.strip() for p in pieces if p.strip()), words, info.language, confidence

    def warm(self) -> None:
        """Run one short decode so the first real request does not pay for lazy initialisation."""
        self.transcribe(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
