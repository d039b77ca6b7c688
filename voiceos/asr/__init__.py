"""Speech recognition: engines behind one small protocol, chosen by ``asr.engine`` (the shape of ``voiceos.tts``).

- ``whisper`` (:mod:`voiceos.asr.whisper`): faster-whisper; the embedded tiny.en, or any model it can load. Every
  call costs its 30 s window, however short the audio.
- ``moonshine`` (:mod:`voiceos.asr.moonshine`): Moonshine tiny-en from the ``moonshine-voice`` wheel, run in
  onnxruntime; its encoder reads the raw audio, so a call costs what the audio's length does. With
  ``asr.fallback_below``, a transcript it is unsure of is transcribed again by Whisper (:mod:`voiceos.asr.fallback`).

Callers load an engine with :func:`load_transcriber` and use only :class:`Transcriber`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from voiceos.asr.types import ENGINES, Transcriber, Transcript, Word
from voiceos.audio.rate import SAMPLE_RATE

if TYPE_CHECKING:
    from voiceos.config import AsrOptions
    from voiceos.models import DevicePlan

__all__ = ["ENGINES", "SAMPLE_RATE", "Transcriber", "Transcript", "Word", "load_transcriber"]


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
