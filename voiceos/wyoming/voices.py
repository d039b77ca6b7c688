"""The voices the Wyoming server offers: every profile in the voices directory, each with its emotions as speakers.

The pipeline's own voice is loaded already. Another voice is loaded the first time a client asks for it (on the model
thread, ~0.3 s for a Piper voice) and kept; at most :data:`MAX_LOADED` voices stay loaded, the oldest other voice
goes first. The list is read once, when the server starts.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from pathlib import Path

from voiceos.errors import VoiceosError
from voiceos.pipeline import Pipeline
from voiceos.tts import TtsEngine, load_engine
from voiceos.tts.voices import VoiceProfile, default_voices_dir, is_coqui_model_name, list_voices, load_voice

log = logging.getLogger(__name__)

MAX_LOADED = 3
_LOCALE = re.compile(r"^([a-z]{2,3}(?:_[A-Z]{2})?)-")  # Piper model names: en_US-joe-medium


class VoiceRequestError(ValueError):
    """A voice or speaker (emotion) the server does not have: the message lists what it has."""


class VoiceCatalog:
    """Voice profiles by name (the file name in the voices directory, as ``tts.voice`` names them)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._plan = pipeline.plan
        self.profiles: dict[str, VoiceProfile] = {}
        self._engines: OrderedDict[str, TtsEngine] = OrderedDict()
        self.default: str | None = None
        if pipeline.tts is None or pipeline.voice is None:
            return
        tts = pipeline.config.tts
        directory = Path(tts.voices_dir) if tts.voices_dir else default_voices_dir()
        for name in list_voices(directory):
            try:
                self.profiles[name] = load_voice(name, directory)
            except Exception as err:  # one broken profile must not hide the others (it is refused when asked for)
                log.warning("wyoming: voice %s is not offered: %s", name, err)
        self.default = Path(tts.voice).stem if tts.voice.endswith((".yaml", ".yml")) else tts.voice
        self.profiles[self.default] = pipeline.voice
        self._engines[self.default] = pipeline.tts

    def profile(self, name: str | None) -> tuple[str, VoiceProfile]:
        """The profile called ``name`` (``None``: the pipeline's voice)."""
        if self.default is None:
            raise VoiceRequestError("this server was started without a voice")
        name = self.default if name is None else name
        profile = self.profiles.get(name)
        if profile is None:
            raise VoiceRequestError(f"unknown voice {name!r} (voices: {', '.join(sorted(self.profiles))})"[:300])
        return name, profile

    def emotion(self, profile: VoiceProfile, speaker: str | None) -> str | None:
        """The emotion a Wyoming ``speaker`` names, checked against the voice's emotion tables."""
        if speaker is None:
            return None
        key = speaker.strip().lower() if isinstance(speaker, str) else ""
        if key not in profile.emotions:
            known = ", ".join(profile.emotion_names) or "none"
            raise VoiceRequestError(f"voice {profile.name!r} has no speaker (emotion) {speaker!r} (speakers: {known})")
        return key

    def engine(self, name: str) -> TtsEngine:
        """The engine of voice ``name``, loaded now if it is not yet. Blocking: call it on the model thread."""
        engine = self._engines.get(name)
        if engine is not None:
            self._engines.move_to_end(name)
            return engine
        _, profile = self.profile(name)
        engine = load_engine(profile, self._plan)
        engine.warm()
        self._engines[name] = engine
        log.info("wyoming: loaded voice %s (%d voice(s) loaded)", name, len(self._engines))
        while len(self._engines) > MAX_LOADED:
            oldest = next(n for n in self._engines if n != self.default)
            del self._engines[oldest]
            log.info("wyoming: unloaded voice %s", oldest)
        return engine


def voice_languages(profile: VoiceProfile) -> list[str]:
    """The language a profile speaks: its own setting, its Piper model's config, else its model's name."""
    if profile.language:
        return [profile.language]
    if profile.engine == "coqui" and is_coqui_model_name(profile.model):
        return [profile.model.split("/")[1]]  # tts_models/<lang>/<dataset>/<model>
    try:
        model, config = profile.model_files()
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, VoiceosError) as err:  # a model not installed, a config that is not JSON
        log.debug("wyoming: no language for voice %s: %s", profile.name, err)
        return []
    code = (data.get("language") or {}).get("code") if isinstance(data, dict) else None
    if isinstance(code, str) and code:
        return [code]
    match = _LOCALE.match(model.name)
    return [match.group(1)] if match else []
