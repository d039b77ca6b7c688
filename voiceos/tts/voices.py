"""Voice profiles: which model speaks, and how each emotion changes its prosody.

A profile is a YAML file (see ``voices/joe.yaml`` for the documented default). It is validated once when loaded:
an unknown key, a wrong type or an out-of-range value raises :class:`VoiceProfileError` naming the file and the
dotted key. The schema is driven by the dataclasses below, so adding a field to :class:`Prosody` or
:class:`BaseProsody` extends the accepted YAML keys without touching the validator.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voiceos.config import PACKAGE_DIR
from voiceos.errors import ConfigError, ModelNotFoundError, VoiceosError
from voiceos.models import EMBEDDED_VOICE, embedded_piper_voice

log = logging.getLogger(__name__)

ENGINES = ("piper", "coqui")
NEUTRAL = "neutral"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class UnknownVoiceError(VoiceosError):
    """No voice profile of that name (the message lists the available ones)."""


class VoiceProfileError(ConfigError):
    """A voice profile file is invalid: the message names the file and the key."""


def _num(default: float | int | None, lo: float, hi: float, doc: str) -> Any:
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class BaseProsody:
    """The voice's own delivery, before any emotion is applied (Piper's native synthesis knobs)."""

    length_scale: float = _num(1.0, 0.1, 5.0, "phoneme duration scale, >1 slower")
    noise_scale: float = _num(0.667, 0.0, 2.0, "generator noise (timbre variation)")
    noise_w: float = _num(0.8, 0.0, 2.0, "phoneme-duration noise (rhythm variation)")
    volume: float = _num(1.0, 0.0, 2.0, "peak level of each sentence (Piper normalizes a sentence to peak 1.0)")
    sentence_pause_ms: int = _num(200, 0, 5000, "silence inserted between sentences")


@dataclass(frozen=True)
class Prosody:
    """How one emotion modifies the base delivery. The identity values below mean 'as the base voice'.

    ``pitch_semitones`` and ``pitch_range`` have no Piper knob: the Piper engine applies them to each sentence
    afterwards with :func:`voiceos.tts.prosody.shift_pitch` (PSOLA). ``pause_ms`` of ``None`` means the base
    ``sentence_pause_ms``.
    """

    rate: float = _num(1.0, 0.25, 4.0, "speaking-rate multiplier, >1 faster")
    pitch_semitones: float = _num(0.0, -12.0, 12.0, "pitch shift")
    pitch_range: float = _num(1.0, 0.0, 4.0, "intonation range multiplier")
    energy_db: float = _num(0.0, -40.0, 12.0, "loudness change")
    expressiveness: float = _num(1.0, 0.0, 4.0, "multiplier on both noise scales")
    pause_ms: int | None = _num(None, 0, 5000, "pause between sentences")
    # Coqui voice-cloning models (XTTS): a reference clip for this emotion instead of the profile's ``speaker_wav``.
    speaker_wav: str | None = field(default=None, metadata={"doc": "reference clip for this emotion (coqui)"})

    @property
    def gain(self) -> float:
        """``energy_db`` as a linear amplitude factor."""
        return 10.0 ** (self.energy_db / 20.0)


@dataclass(frozen=True)
class VoiceProfile:
    name: str
    engine: str = "piper"
    model: str = EMBEDDED_VOICE  # "embedded:<voice>" or an absolute path (relative ones are resolved on load)
    config: str | None = None  # model json; None: model + ".json"
    speaker: int | str | None = None  # id or name, multi-speaker models only
    language: str | None = None  # coqui: the language of multilingual models (XTTS), e.g. "en"
    speaker_wav: str | None = None  # coqui: reference clip of the voice to clone (XTTS, YourTTS)
    description: str = ""
    base: BaseProsody = field(default_factory=BaseProsody)
    emotions: dict[str, Prosody] = field(default_factory=dict, hash=False)
    source: str = field(default="<defaults>", compare=False)

    @property
    def emotion_names(self) -> list[str]:
        return sorted(self.emotions)

    def prosody_for(self, emotion: str | Prosody | None) -> Prosody:
        """The prosody for ``emotion`` with ``pause_ms`` resolved; unknown or ``None`` falls back to neutral.

        A :class:`Prosody` given directly is used as it is (its missing pause taken from the base voice).
        """
        if isinstance(emotion, Prosody):
            if emotion.pause_ms is None:
                return dataclasses.replace(emotion, pause_ms=self.base.sentence_pause_ms)
            return emotion
        key = (emotion or NEUTRAL).strip().lower()
        prosody = self.emotions.get(key)
        if prosody is None:
            if emotion is not None and key != NEUTRAL:
                log.debug("voice %s has no emotion %r; using %s", self.name, emotion, NEUTRAL)
            prosody = self.emotions.get(NEUTRAL, Prosody())
        if prosody.pause_ms is None:
            prosody = dataclasses.replace(prosody, pause_ms=self.base.sentence_pause_ms)
        return prosody

    @property
    def model_path(self) -> Path:
        """The model file (embedded voices resolved); raises ModelNotFoundError if it or its json is missing."""
        return self.model_files()[0]

    def model_files(self) -> tuple[Path, Path]:
        """The model and its json config, checked to exist (raises :class:`ModelNotFoundError`)."""
        if self.model.startswith("embedded:"):
            model, config = embedded_piper_voice()
        else:
            model = Path(self.model)
            if not model.is_file():
                raise ModelNotFoundError(f"{self.source}: model file not found: {model}")
            config = model.with_name(model.name + ".json")
        if self.config is not None:
            config = Path(self.config)
        if not config.is_file():
            raise ModelNotFoundError(f"{self.source}: model config file not found: {config}")
        return model, config


def default_voices_dir() -> Path:
    """The installed wheel's ``voiceos/voices``, else the source tree's ``voices/``."""
    packaged = PACKAGE_DIR / "voices"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "voices"


def list_voices(voices_dir: str | Path | None = None) -> list[str]:
    directory = Path(voices_dir) if voices_dir is not None else default_voices_dir()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.yaml") if p.is_file())


def load_voice(name_or_path: str, voices_dir: str | Path | None = None) -> VoiceProfile:
    """Load a profile by name (``<voices_dir>/<name>.yaml``) or by a path to a YAML file."""
    text = str(name_or_path).strip()
    looks_like_path = text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise UnknownVoiceError(f"voice profile file not found: {path}")
    else:
        directory = Path(voices_dir) if voices_dir is not None else default_voices_dir()
        path = directory / f"{text}.yaml"
        if not _NAME_RE.match(text) or not path.is_file():
            available = ", ".join(list_voices(directory)) or "none"
            raise UnknownVoiceError(f"unknown voice {text!r} in {directory} (available: {available})")
    return _load_file(path.resolve())


def _load_file(path: Path) -> VoiceProfile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise VoiceProfileError(f"{path}: cannot read voice profile ({err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise VoiceProfileError(f"{path}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    return profile_from_dict(data if data is not None else {}, source=path)


def profile_from_dict(data: Any, source: str | Path = "<dict>") -> VoiceProfile:
    """Validate a parsed profile. Relative model/config paths resolve against the directory of ``source``."""
    src = str(source)
    if not isinstance(data, dict):
        raise VoiceProfileError(f"{src}: expected a mapping at the top level, got {_describe(data)}")
    data = dict(data)
    base_dir = Path(source).parent if isinstance(source, Path) else Path.cwd()
    emotions_raw = data.pop("emotions", None)
    data.setdefault("name", Path(source).stem if isinstance(source, Path) else "voice")
    profile: VoiceProfile = _build(VoiceProfile, data, src, "", skip={"emotions", "source"})
    if profile.engine not in ENGINES:
        raise VoiceProfileError(f"{src}: 'engine' must be one of {', '.join(ENGINES)}, got {profile.engine!r}")
    if not profile.name.strip():
        raise VoiceProfileError(f"{src}: 'name' must not be empty")
    model = profile.model.strip()
    if profile.engine == "coqui" and (model.startswith("embedded:") or not model):
        raise VoiceProfileError(
            f"{src}: 'model' must be a Coqui model name (tts_models/...) or a checkpoint path for engine coqui"
        )
    if profile.engine != "coqui" and (profile.language is not None or profile.speaker_wav is not None):
        key = "language" if profile.language is not None else "speaker_wav"
        raise VoiceProfileError(f"{src}: '{key}' is only used by engine coqui")
    if profile.engine == "coqui" and is_coqui_model_name(model):
        pass  # downloaded by Coqui's own model manager, not a path
    elif model.startswith("embedded:"):
        if model != EMBEDDED_VOICE:
            raise VoiceProfileError(f"{src}: 'model' {model!r} is not an embedded voice (only {EMBEDDED_VOICE})")
    elif not model:
        raise VoiceProfileError(f"{src}: 'model' must not be empty")
    else:
        model = str((base_dir / Path(model).expanduser()).resolve())
    config = profile.config
    if config is not None:
        config = str((base_dir / Path(config).expanduser()).resolve())
    emotions = _build_emotions(emotions_raw, src)
    speaker_wav = _resolve(profile.speaker_wav, base_dir)
    for emotion, prosody in emotions.items():
        if prosody.speaker_wav is not None:
            if profile.engine != "coqui":
                raise VoiceProfileError(f"{src}: 'emotions.{emotion}.speaker_wav' is only used by engine coqui")
            emotions[emotion] = dataclasses.replace(prosody, speaker_wav=_resolve(prosody.speaker_wav, base_dir))
    for emotion, prosody in emotions.items():
        if profile.base.volume * prosody.gain > 1.0 + 1e-6:
            log.warning("%s: emotion %r peaks above full scale (base.volume x energy_db) and will clip", src, emotion)
    return dataclasses.replace(
        profile, model=model, config=config, speaker_wav=speaker_wav, emotions=emotions, source=src
    )


def is_coqui_model_name(model: str) -> bool:
    """A name from Coqui's model list (``tts_models/<lang>/<dataset>/<model>``), as opposed to a checkpoint path."""
    return model.startswith("tts_models/")


def _resolve(path: str | None, base_dir: Path) -> str | None:
    return None if path is None else str((base_dir / Path(path).expanduser()).resolve())


def _build_emotions(raw: Any, src: str) -> dict[str, Prosody]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise VoiceProfileError(f"{src}: 'emotions' must be a mapping of emotion name to prosody, got {_describe(raw)}")
    emotions: dict[str, Prosody] = {}
    for name, table in raw.items():
        key = str(name).strip().lower()
        if not isinstance(name, str) or not _NAME_RE.match(key):
            raise VoiceProfileError(f"{src}: 'emotions' has an invalid emotion name {name!r}")
        if key in emotions:
            raise VoiceProfileError(f"{src}: 'emotions.{key}' is defined twice")
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise VoiceProfileError(f"{src}: 'emotions.{key}' must be a mapping, got {_describe(table)}")
        emotions[key] = _build(Prosody, table, src, f"emotions.{key}.")
    return emotions


def _build(cls: type, data: dict[str, Any], src: str, prefix: str, skip: set[str] | frozenset[str] = frozenset()):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(map(str, set(data) - set(fields)))
    if unknown:
        raise VoiceProfileError(f"{src}: unknown key '{prefix}{unknown[0]}' (expected one of: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise VoiceProfileError(f"{src}: '{key}' must be a mapping, got {_describe(value)}")
            values[name] = _build(hint, value, src, key + ".")
        else:
            values[name] = _check_value(key, value, hint, fields[name], src)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, f: dataclasses.Field, src: str) -> Any:
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise VoiceProfileError(f"{src}: '{key}' must be {_type_names(allowed)}, got null")
    if isinstance(value, bool) and bool not in allowed:
        raise VoiceProfileError(f"{src}: '{key}' must be {_type_names(allowed)}, got {_describe(value)}")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, tuple(t for t in allowed if t is not type(None))):
        raise VoiceProfileError(f"{src}: '{key}' must be {_type_names(allowed)}, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise VoiceProfileError(f"{src}: '{key}' must be a finite number, got {value!r}")
    lo, hi = f.metadata.get("range", (None, None))
    if isinstance(value, (int, float)) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise VoiceProfileError(f"{src}: '{key}' must be between {lo} and {hi}, got {value!r}")
    return value


def _type_names(allowed: tuple[Any, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}
    return " or ".join(names.get(t, getattr(t, "__name__", str(t))) for t in allowed)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
