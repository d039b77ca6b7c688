"""Speech recognition: engines behind one small protocol, chosen by ``asr.engine`` (the shape of ``voiceos.tts``).

- ``whisper`` (:mod:`voiceos.asr.whisper`): faster-whisper; the embedded tiny.en, or any model it can load. Every
  call costs its 30 s window, however short the audio.
- ``moonshine`` (:mod:`voiceos.asr.moonshine`): Moonshine tiny-en from the ``moonshine-voice`` wheel, run in
  onnxruntime; its encoder reads the raw audio, so a call costs what the audio's length does. With
  ``asr.fallback_below``, a transcript it is unsure of is transcribed again by Whisper (:mod:`voiceos.asr.fallback`).

Callers load an engine with :func:`load_transcriber` and use only :class:`Transcriber`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from voiceos.config import AsrOptions
    from voiceos.models import DevicePlan

SAMPLE_RATE = 16000
ENGINES = ("whisper", "moonshine")

__all__ = ["ENGINES", "SAMPLE_RATE", "Transcriber", "Transcript", "Word", "load_transcriber"]


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
    looped: bool = False  # the decode looped (voiceos.asr.loops): Whisper decoded again, Moonshine's repeats cut
    confidence: float | None = None  # the mean log-probability of its tokens (None: not known)
    second_opinion: bool = False  # transcribed again by the fallback engine (asr.fallback_below)


@runtime_checkable
class Transcriber(Protocol):
    """What the pipeline, the daemon and the Wyoming server need from a speech recognizer."""

    engine: str  # "whisper" or "moonshine"
    model_name: str  # the model as configured (asr.model), for status lines and Wyoming's info
    word_times: bool  # whether transcribe(..., word_timestamps=True) gives words with times
    incremental: (
        bool  # a call costs what the audio's length does: a growing utterance may be transcribed again and again
    )

    @property
    def languages(self) -> list[str]:
        """The languages it transcribes (``["en"]`` for the English-only models)."""
        ...

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio; silence gives an empty text. Blocking; one call at a time."""
        ...

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        """The words so far of an utterance still being spoken: the engine's quickest pass (no second opinion). A
        later :meth:`transcribe` of the very same samples starts from it."""
        ...

    def warm(self) -> None:
        """Pay lazy initialisation at start-up, not on the first utterance."""
        ...

    def describe(self) -> str:
        """One line for logs, ``doctor`` and ``status``: the engine, its model and where it runs."""
        ...


def load_transcriber(options: AsrOptions, plan: DevicePlan | None = None) -> Transcriber:
    """Load the engine ``options.engine`` names, on the plan's device and threads (engine modules are imported only
    when used: each brings its runtime)."""
    from voiceos.models import plan_asr

    asr = plan.asr if plan is not None else None
    if asr is None or asr.engine != options.engine:  # (a caller may load another engine than the config's)
        device = plan.torch_device if plan is not None else "auto"
        asr = plan_asr(options.engine, device, options.compute_type, asr.threads if asr else options.threads)
    if options.engine == "moonshine":
        from voiceos.asr.moonshine import MoonshineTranscriber

        moonshine = MoonshineTranscriber.load(options, asr)
        if options.fallback_below is None:
            return moonshine
        import dataclasses

        from voiceos.asr.fallback import FallbackTranscriber

        whisper = load_transcriber(dataclasses.replace(options, engine="whisper", model="auto"), plan)
        return FallbackTranscriber(moonshine, whisper, options.fallback_below)
    from voiceos.asr.whisper import WhisperTranscriber

    return WhisperTranscriber.load(options, asr)
