"""Text to speech: voice profiles, and engines that turn text into float32 mono audio one sentence at a time."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from voiceos.errors import VoiceosError
from voiceos.tts.voices import (
    BaseProsody,
    Prosody,
    UnknownVoiceError,
    VoiceProfile,
    VoiceProfileError,
    list_voices,
    load_voice,
)

if TYPE_CHECKING:
    from voiceos.models import DevicePlan

__all__ = [
    "BaseProsody",
    "Prosody",
    "TtsEngine",
    "UnknownVoiceError",
    "VoiceProfile",
    "VoiceProfileError",
    "list_voices",
    "load_engine",
    "load_voice",
]


@runtime_checkable
class TtsEngine(Protocol):
    """What the pipeline needs from a speech synthesizer."""

    @property
    def sample_rate(self) -> int: ...

    def synthesize(self, text: str, emotion: str | Prosody | None = None) -> Generator[np.ndarray, None, None]:
        """Yield float32 mono chunks (one per sentence) as they are produced; empty text yields nothing."""
        ...

    def synthesize_all(self, text: str, emotion: str | Prosody | None = None) -> np.ndarray: ...

    def warm(self) -> None: ...


def load_engine(profile: VoiceProfile, plan: DevicePlan | None = None) -> TtsEngine:
    """Load the engine a profile names; engine modules are imported only when used (they import onnxruntime)."""
    if profile.engine == "piper":
        from voiceos.tts.piper import PiperEngine

        return PiperEngine.load(profile, plan)
    if profile.engine == "coqui":
        try:
            from voiceos.tts.coqui import CoquiEngine
        except ImportError as err:
            raise VoiceosError(
                f"{profile.source}: engine 'coqui' needs Coqui TTS (pip install 'voiceos[coqui]'; missing {err.name})"
            ) from None
        return CoquiEngine.load(profile, plan)
    raise VoiceosError(f"{profile.source}: unknown TTS engine {profile.engine!r}")
