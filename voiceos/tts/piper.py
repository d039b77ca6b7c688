"""Piper text-to-speech: one float32 chunk per sentence, streamed as Piper produces them.

Emotion is applied natively through Piper's synthesis knobs: ``length_scale = base / rate``, both noise scales
times ``expressiveness``, ``volume = base.volume * 10^(energy_db/20)``, and the emotion's pause between sentences.
Pitch (``pitch_semitones``, ``pitch_range``) has no Piper knob: each sentence is post-processed with PSOLA
(:mod:`voiceos.tts.prosody`) as soon as Piper has produced it, which keeps its duration and formants.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig

from voiceos.errors import ModelNotFoundError
from voiceos.models import DevicePlan
from voiceos.tts.prosody import pitch_unchanged, shift_pitch
from voiceos.tts.voices import Prosody, VoiceProfile, VoiceProfileError

log = logging.getLogger(__name__)

_CUDA = "CUDAExecutionProvider"
_WARM_TEXT = "Hi."


class PiperEngine:
    """A loaded Piper voice plus the profile that says how each emotion sounds."""

    def __init__(self, voice: PiperVoice, profile: VoiceProfile, speaker_id: int | None = None) -> None:
        self.voice = voice
        self.profile = profile
        self.speaker_id = speaker_id

    @classmethod
    def load(cls, profile: VoiceProfile, plan: DevicePlan | None = None) -> PiperEngine:
        """Load the profile's model, on CUDA when ``plan`` lists the CUDA provider and onnxruntime has it."""
        model, config = profile.model_files()
        use_cuda = plan is not None and _CUDA in plan.onnx_providers
        if use_cuda and _CUDA not in onnxruntime.get_available_providers():
            log.warning("onnxruntime has no CUDA provider (install onnxruntime-gpu); Piper runs on the CPU")
            use_cuda = False
        start = time.perf_counter()
        try:
            voice = PiperVoice.load(model, config_path=config, use_cuda=use_cuda)
        except Exception as err:
            # A bad json raises OSError/ValueError/KeyError; a corrupt .onnx raises onnxruntime's own exception types.
            ours = isinstance(err, (OSError, ValueError, KeyError, TypeError))
            if not ours and not type(err).__module__.startswith("onnxruntime"):
                raise
            what = "voice config" if isinstance(err, (ValueError, KeyError, TypeError)) else "model"
            raise ModelNotFoundError(f"{profile.source}: cannot load Piper {what} {model}: {_one_line(err)}") from None
        log.info(
            "loaded Piper voice %s (%s Hz, %s) in %.2f s",
            model.name,
            voice.config.sample_rate,
            "cuda" if use_cuda else "cpu",
            time.perf_counter() - start,
        )
        return cls(voice, profile, _speaker_id(profile, voice))

    @property
    def sample_rate(self) -> int:
        return int(self.voice.config.sample_rate)

    def synthesis_config(self, prosody: Prosody) -> SynthesisConfig:
        """Map a prosody onto Piper's native synthesis settings."""
        base = self.profile.base
        return SynthesisConfig(
            speaker_id=self.speaker_id,
            length_scale=base.length_scale / prosody.rate,
            noise_scale=base.noise_scale * prosody.expressiveness,
            noise_w_scale=base.noise_w * prosody.expressiveness,
            volume=base.volume * prosody.gain,
        )

    def synthesize(self, text: str, emotion: str | Prosody | None = None) -> Generator[np.ndarray, None, None]:
        """Yield one float32 mono chunk per sentence; every chunk after the first starts with the pause.

        ``emotion`` is an emotion name from the profile (unknown names fall back to neutral) or a :class:`Prosody`.
        """
        if not text or not text.strip():
            return
        prosody = self.profile.prosody_for(emotion)
        syn_config = self.synthesis_config(prosody)
        pause = np.zeros(round((prosody.pause_ms or 0) * self.sample_rate / 1000), dtype=np.float32)
        shift = not pitch_unchanged(prosody.pitch_semitones, prosody.pitch_range)
        first = True
        for chunk in self.voice.synthesize(text, syn_config=syn_config):
            audio = np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            if audio.size == 0:
                continue
            if shift:
                audio = shift_pitch(audio, self.sample_rate, prosody.pitch_semitones, prosody.pitch_range)
            # The pause goes before each later sentence rather than after each one, so the first chunk is not held
            # back waiting to learn whether another sentence follows, and nothing trails the last one.
            yield audio if first or pause.size == 0 else np.concatenate([pause, audio])
            first = False

    def synthesize_all(self, text: str, emotion: str | Prosody | None = None) -> np.ndarray:
        chunks = list(self.synthesize(text, emotion))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def warm(self) -> None:
        """Synthesize a short word once: the first call pays for espeak-ng and onnxruntime initialization."""
        start = time.perf_counter()
        for _ in self.synthesize(_WARM_TEXT):
            pass
        log.debug("Piper warm-up took %.2f s", time.perf_counter() - start)


def _speaker_id(profile: VoiceProfile, voice: PiperVoice) -> int | None:
    speaker = profile.speaker
    if speaker is None:
        return None
    num_speakers = int(voice.config.num_speakers)
    if isinstance(speaker, str):
        speakers = dict(voice.config.speaker_id_map)
        if speaker not in speakers:
            known = ", ".join(sorted(speakers)) or "none, it has one speaker"
            raise VoiceProfileError(f"{profile.source}: 'speaker' {speaker!r} is not in the model (speakers: {known})")
        return int(speakers[speaker])
    if num_speakers <= 1:
        if speaker != 0:
            log.warning("%s: 'speaker' %s ignored: the model has a single speaker", profile.source, speaker)
        return None
    if not 0 <= speaker < num_speakers:
        raise VoiceProfileError(f"{profile.source}: 'speaker' must be between 0 and {num_speakers - 1}, got {speaker}")
    return speaker


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
