"""Coqui TTS (``coqui-tts``): any Coqui model by name or local checkpoint, one float32 chunk per sentence.

``model`` in the profile is either a name from Coqui's model list (``tts_models/en/ljspeech/vits``,
``tts_models/multilingual/multi-dataset/xtts_v2``), downloaded once through Coqui's own model manager, or a local
checkpoint (a ``.pth`` file or a model directory) with ``config`` naming its ``config.json`` (default: the
``config.json`` next to it).

Prosody, per sentence:

- ``rate``: natively where the model has a duration scale (VITS, Glow-TTS, FastSpeech/FastPitch, AlignTTS:
  ``length_scale = model default x base.length_scale / rate``; XTTS: ``speed = rate / base.length_scale``), else by
  time-stretching the sentence afterwards (Praat's PSOLA, which keeps the pitch).
- ``expressiveness``: multiplies the model's own VITS noise scales, or XTTS's sampling temperature (``base.noise_scale``
  and ``base.noise_w`` are Piper's and unused here).
- ``energy_db``: each sentence is normalized to peak ``base.volume`` and multiplied by ``10^(energy_db/20)``
  (Piper's convention), clipped at full scale.
- ``pitch_semitones``/``pitch_range``: :func:`voiceos.tts.prosody.shift_pitch` after synthesis.
- ``pause_ms``: silence before every sentence but the first.

Voice cloning (XTTS): ``speaker_wav`` (the profile's, or an emotion's own) is a reference clip. It is read with
soundfile, so no FFmpeg is needed, and its conditioning latents are computed once per clip and cached.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from TTS.api import TTS
from TTS.utils.synthesizer import PAD_SILENCE_SAMPLES

from voiceos.errors import ModelNotFoundError, VoiceosError
from voiceos.models import DevicePlan
from voiceos.text.chunker import SentenceChunker
from voiceos.tts.prosody import pitch_unchanged, shift_pitch
from voiceos.tts.voices import Prosody, VoiceProfile, VoiceProfileError, is_coqui_model_name

log = logging.getLogger(__name__)

_WARM_TEXT = "Hi."
_XTTS_REF_RATE = 22050  # the rate XTTS computes its conditioning latents at (Coqui's load_sr)


class CoquiEngine:
    """A loaded Coqui model plus the profile that says how each emotion sounds."""

    def __init__(self, tts: TTS, profile: VoiceProfile) -> None:
        if tts.synthesizer is None or tts.synthesizer.tts_model is None:
            raise ModelNotFoundError(f"{profile.source}: Coqui model {profile.model} is not a text-to-speech model")
        self.tts = tts
        self.profile = profile
        self.synthesizer = tts.synthesizer
        self.model = self.synthesizer.tts_model
        self.is_xtts = type(self.model).__name__ == "Xtts"
        self._native_length_scale = float(getattr(self.model, "length_scale", 1.0) or 1.0)
        # VITS's sampling noise (timbre) and duration noise (rhythm), as the model's config sets them.
        self._noise_scales = {
            name: float(getattr(self.model, name))
            for name in ("inference_noise_scale", "inference_noise_scale_dp")
            if isinstance(getattr(self.model, name, None), (int, float))
        }
        self._latents: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.language = self._language()
        self.speaker = self._speaker()
        self._check_speaker_clips()

    @classmethod
    def load(cls, profile: VoiceProfile, plan: DevicePlan | None = None) -> CoquiEngine:
        """Load the profile's model (by name through Coqui's model manager, or a checkpoint) on ``plan``'s device."""
        start = time.perf_counter()
        # Coqui logs every sentence and its real-time factor at INFO; quiet it unless logging was set up for it.
        synth_log = logging.getLogger("TTS.utils.synthesizer")
        if synth_log.level == logging.NOTSET:
            synth_log.setLevel(logging.WARNING)
        name = profile.model if is_coqui_model_name(profile.model) else None
        try:
            if name is not None:
                tts = TTS(model_name=name, progress_bar=False)
            else:
                model, config = _checkpoint_files(profile)
                tts = TTS(model_path=str(model), config_path=str(config), progress_bar=False)
        except VoiceosError:
            raise
        except EOFError:  # Coqui asks on stdin to accept a model's licence (XTTS) before downloading it
            raise ModelNotFoundError(
                f"{profile.source}: Coqui model {name} needs its licence accepted: set COQUI_TOS_AGREED=1"
            ) from None
        except Exception as err:  # Coqui raises anything from KeyError to RuntimeError on a bad model or config
            what = f"{profile.source}: cannot load Coqui model {profile.model}"
            raise ModelNotFoundError(f"{what}: {_one_line(err)}") from None
        device = plan.torch_device if plan is not None else "cpu"
        if device != "cpu":
            tts.to(device)
        engine = cls(tts, profile)
        log.info(
            "loaded Coqui model %s (%s, %s Hz, %s) in %.2f s",
            profile.model,
            type(engine.model).__name__,
            engine.sample_rate,
            device,
            time.perf_counter() - start,
        )
        return engine

    @property
    def sample_rate(self) -> int:
        return int(self.synthesizer.output_sample_rate)

    def synthesize(self, text: str, emotion: str | Prosody | None = None) -> Generator[np.ndarray, None, None]:
        """Yield one float32 mono chunk per sentence; every chunk after the first starts with the pause."""
        if not text or not text.strip():
            return
        prosody = self.profile.prosody_for(emotion)
        pause = np.zeros(round((prosody.pause_ms or 0) * self.sample_rate / 1000), dtype=np.float32)
        chunker = SentenceChunker()
        first = True
        for sentence in [*chunker.push(text), *chunker.flush()]:
            audio = self.synthesize_sentence(sentence, prosody)
            if audio.size == 0:
                continue
            yield audio if first or pause.size == 0 else np.concatenate([pause, audio])
            first = False

    def synthesize_all(self, text: str, emotion: str | Prosody | None = None) -> np.ndarray:
        chunks = list(self.synthesize(text, emotion))
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def synthesize_sentence(self, sentence: str, prosody: Prosody) -> np.ndarray:
        """One sentence with ``prosody`` applied: native speed where the model has it, the rest afterwards."""
        base = self.profile.base
        speed = prosody.rate / base.length_scale
        if self.is_xtts:
            audio = self._xtts(sentence, prosody, speed)
            stretch = 1.0
        else:
            audio, stretch = self._generic(sentence, prosody, speed)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return audio
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
        if stretch != 1.0:
            audio = time_stretch(audio, self.sample_rate, stretch)
        if not pitch_unchanged(prosody.pitch_semitones, prosody.pitch_range):
            audio = shift_pitch(audio, self.sample_rate, prosody.pitch_semitones, prosody.pitch_range)
        peak = float(np.max(np.abs(audio)))
        if peak > 0:
            audio = np.clip(audio * (base.volume * prosody.gain / peak), -1.0, 1.0)
        return audio.astype(np.float32, copy=False)

    def warm(self) -> None:
        """Synthesize a short word once (and compute the speaker clip's latents, for XTTS)."""
        start = time.perf_counter()
        for _ in self.synthesize(_WARM_TEXT):
            pass
        log.debug("Coqui warm-up took %.2f s", time.perf_counter() - start)

    # -- model families ------------------------------------------------------------------------------------------
    def _generic(self, sentence: str, prosody: Prosody, speed: float) -> tuple[np.ndarray, float]:
        """Any model Coqui's Synthesizer drives (VITS, Glow-TTS, Tacotron + vocoder, ...); returns (audio, stretch)."""
        model = self.model
        stretch = 1.0
        if hasattr(model, "length_scale"):
            model.length_scale = self._native_length_scale / speed
        else:
            stretch = 1.0 / speed
        for name, native in self._noise_scales.items():
            setattr(model, name, native * prosody.expressiveness)
        speaker_wav = (prosody.speaker_wav or self.profile.speaker_wav) if self.tts.is_multi_speaker else None
        wav = self.synthesizer.tts(
            text=sentence,
            speaker_name=self.speaker,
            language_name=self.language,
            speaker_wav=speaker_wav,
            split_sentences=False,
        )
        audio = np.asarray(wav, dtype=np.float32).reshape(-1)
        if audio.size > PAD_SILENCE_SAMPLES:  # the Synthesizer appends this much silence after every sentence
            audio = audio[:-PAD_SILENCE_SAMPLES]
        return audio, stretch

    def _xtts(self, sentence: str, prosody: Prosody, speed: float) -> np.ndarray:
        model = self.model
        config = model.config
        gpt_latent, speaker_embedding = self._xtts_voice(prosody.speaker_wav or self.profile.speaker_wav)
        out = model.inference(
            sentence,
            self.language,
            gpt_latent,
            speaker_embedding,
            temperature=max(0.05, float(config.temperature) * prosody.expressiveness),
            length_penalty=config.length_penalty,
            repetition_penalty=config.repetition_penalty,
            top_k=config.top_k,
            top_p=config.top_p,
            speed=speed,
        )
        wav = out["wav"]
        return wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav)

    def _xtts_voice(self, clip: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """XTTS conditioning: a built-in speaker's latents, or a reference clip's (computed once per clip)."""
        if clip is None:
            manager = getattr(self.model, "speaker_manager", None)
            if manager is not None and self.speaker in manager.speakers:  # XTTS-v2's built-in speakers
                latent, embedding = manager.speakers[self.speaker].values()
                return latent, embedding
            # A voice cloned earlier and cached by Coqui in the model's voice directory.
            voice = self.model.clone_voice(None, self.speaker, self.synthesizer.voice_dir)
            return voice["gpt_conditioning_latents"], voice["speaker_embedding"]
        if clip not in self._latents:
            model = self.model
            config = model.config
            audio = torch.from_numpy(_read_clip(clip, _XTTS_REF_RATE)).unsqueeze(0)
            audio = audio[:, : _XTTS_REF_RATE * int(config.max_ref_len)].to(model.device)
            if config.sound_norm_refs:
                audio = audio / audio.abs().max().clamp_min(1e-6) * 0.75
            with torch.inference_mode():
                embedding = model.get_speaker_embedding(audio, _XTTS_REF_RATE)
                latent = model.get_gpt_cond_latents(
                    audio, _XTTS_REF_RATE, length=config.gpt_cond_len, chunk_length=config.gpt_cond_chunk_len
                )
            self._latents[clip] = (latent, embedding)
        return self._latents[clip]

    # -- profile checks ------------------------------------------------------------------------------------------
    def _language(self) -> str | None:
        languages = list(self.tts.languages or []) if self.tts.is_multi_lingual else []
        language = self.profile.language
        if not languages:
            if language is not None:
                log.warning("%s: 'language' %s ignored: the model has one language", self.profile.source, language)
            return None
        if language is None:
            language = "en" if "en" in languages else languages[0]
        elif language not in languages:
            raise VoiceProfileError(
                f"{self.profile.source}: 'language' {language!r} is not in the model "
                f"(languages: {', '.join(map(str, languages))})"
            )
        return language

    def _speaker(self) -> str | None:
        speaker = self.profile.speaker
        speakers = [str(s) for s in (self.tts.speakers or [])] if self.tts.is_multi_speaker else []
        if speaker is None:
            if self.is_xtts and self.profile.speaker_wav is None:
                if not speakers:
                    raise VoiceProfileError(f"{self.profile.source}: XTTS needs 'speaker_wav' (a reference clip)")
                return speakers[0]
            if speakers and self.profile.speaker_wav is None and not self.is_xtts:
                log.info("%s: no 'speaker' set; using the model's first speaker %s", self.profile.source, speakers[0])
                return speakers[0]
            return None
        if not speakers:
            if speaker not in (0, None):
                log.warning("%s: 'speaker' %s ignored: the model has a single speaker", self.profile.source, speaker)
            return None
        if isinstance(speaker, int):
            if not 0 <= speaker < len(speakers):
                raise VoiceProfileError(
                    f"{self.profile.source}: 'speaker' must be between 0 and {len(speakers) - 1}, got {speaker}"
                )
            return speakers[speaker]
        if speaker not in speakers:
            shown = ", ".join(speakers[:20]) + (", ..." if len(speakers) > 20 else "")
            raise VoiceProfileError(f"{self.profile.source}: 'speaker' {speaker!r} is not in the model ({shown})")
        return speaker

    def _check_speaker_clips(self) -> None:
        clips = {"speaker_wav": self.profile.speaker_wav}
        clips.update({f"emotions.{name}.speaker_wav": p.speaker_wav for name, p in self.profile.emotions.items()})
        for key, clip in clips.items():
            if clip is not None and not Path(clip).is_file():
                raise ModelNotFoundError(f"{self.profile.source}: '{key}' file not found: {clip}")
        if any(clips.values()) and not (self.is_xtts or self.tts.is_multi_speaker):
            log.warning("%s: 'speaker_wav' ignored: the model cannot clone a voice", self.profile.source)


def time_stretch(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """``audio`` made ``factor`` times as long, pitch kept (Praat's PSOLA, as the pitch post-processor uses)."""
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"invalid stretch factor {factor!r}")
    if abs(factor - 1.0) < 1e-3 or audio.size < 0.06 * sample_rate:
        return audio
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=float(sample_rate))
    out = call(sound, "Lengthen (overlap-add)", 75.0, 600.0, float(factor))
    return np.asarray(out.values, dtype=np.float32).reshape(-1)


def _checkpoint_files(profile: VoiceProfile) -> tuple[Path, Path]:
    model = Path(profile.model)
    if not model.exists():
        raise ModelNotFoundError(f"{profile.source}: Coqui checkpoint not found: {model}")
    config = Path(profile.config) if profile.config else (model if model.is_dir() else model.parent) / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(f"{profile.source}: Coqui model config not found: {config}")
    return model, config


def _read_clip(path: str, rate: int) -> np.ndarray:
    """A reference clip as float32 mono at ``rate`` (soundfile + soxr: WAV/FLAC/OGG without FFmpeg)."""
    try:
        audio, clip_rate = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as err:
        raise ModelNotFoundError(f"cannot read speaker clip {path}: {_one_line(err)}") from None
    audio = audio.mean(axis=1)
    if audio.size == 0:
        raise ModelNotFoundError(f"speaker clip {path} is empty")
    if clip_rate != rate:
        audio = soxr.resample(audio, clip_rate, rate).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:200]
