"""Typed configuration built from YAML, validated once at the edge.

Every stage has an options dataclass whose defaults match ``config.yaml``. :func:`load_config` turns a YAML file into
a :class:`Config`; any unknown key, wrong type or out-of-range value raises :class:`ConfigError` naming the file, the
dotted key and what was expected, so nothing starts half-configured.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from voiceos.emotion.labels import LABELS
from voiceos.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_ENV = "VOICEOS_CONFIG"


def _choice(*values: str, default: str) -> Any:
    return field(default=default, metadata={"choices": values})


def _range(default: float | int, lo: float | None = None, hi: float | None = None) -> Any:
    return field(default=default, metadata={"range": (lo, hi)})


EchoMode = Literal["aec", "gate", "off"]


@dataclass(frozen=True)
class EchoOptions:
    """How echo is kept out of the VAD; ``mode``: ``aec`` (cancel, then gate), ``gate`` (gate only), ``off``."""

    mode: EchoMode = "aec"
    margin_db: float = 6.0  # the user must be this much louder than the expected echo
    initial_coupling_db: float = 0.0  # echo vs reference energy before anything is learnt (0: as loud)
    guard_db: float = 10.0  # mode aec: a frame the canceller reduced this much is surely echo (learn from it)
    max_delay_ms: int = 300  # how long after being played a reference sample may still be heard
    lead_ms: int = 40  # how early the echo may arrive relative to the reference's DAC timestamp
    reference_floor_db: float = -60.0  # a reference quieter than this (RMS, dBFS) is silence
    hold_ms: int = 100  # once the user is heard, pass everything for this long

    def __post_init__(self) -> None:
        if self.mode not in ("aec", "gate", "off"):
            raise ValueError(f"echo mode must be aec, gate or off, got {self.mode!r}")
        for name, low, high in (
            ("margin_db", 0, 40),
            ("initial_coupling_db", -60, 20),
            ("guard_db", 0, 60),
            ("max_delay_ms", 0, 2000),
            ("lead_ms", 0, 500),
            ("reference_floor_db", -120, 0),
            ("hold_ms", 0, 5000),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"echo {name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class EmotionPolicy:
    """The voice profile's emotion table used for each emotion heard in the user's turn."""

    anger: str = "calm"
    disgust: str = "calm"
    fear: str = "reassuring"
    joy: str = "joyful"
    neutral: str = "neutral"
    sadness: str = "gentle"
    surprise: str = "neutral"  # mostly questions (curiosity), see the module docstring

    def voice_for(self, label: str) -> str:
        return str(getattr(self, label, self.neutral))


@dataclass(frozen=True)
class EmotionOptions:
    enabled: bool = True  # false: no emotion head; the voice stays neutral and user_emotion is empty
    checkpoint: str | None = None  # the head's directory; null = the one shipped in voiceos/emotion/checkpoint
    min_confidence: float = field(default=0.45, metadata={"range": (0.0, 1.0)})
    context_note: str = "Note: the user seems {feeling}. Respond to that feeling warmly and briefly."
    # The emotions the note is added for (space-separated labels). Not joy by default: the embedded 135M model
    # answers "happy" notes with odd replies (emoji, role play), and answers good news well without one.
    note_for: str = "anger disgust fear sadness"
    # Added instead when the voice stays neutral (neutral, surprise, or an unsure reading); "" adds nothing there.
    neutral_note: str = ""
    # A condolence in the reply is not said when the head reads the turn as neutral or joy at least this sure (0: off).
    condolence_guard: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    # A celebration in the reply is not said when the head reads the turn as neutral, sad, afraid, angry or disgusted
    # at least this sure (0: off).
    celebration_guard: float = field(default=0.8, metadata={"range": (0.0, 1.0)})
    policy: EmotionPolicy = field(default_factory=EmotionPolicy)

    def __post_init__(self) -> None:
        try:
            self.context_note.format(feeling="sad")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"context_note may only use the placeholder {{feeling}} ({err})") from None
        unknown = sorted(set(self.note_for.split()) - set(LABELS))
        if unknown:
            raise ValueError(f"note_for names unknown emotions {unknown} (known: {' '.join(LABELS)})")


@dataclass(frozen=True)
class RuntimeOptions:
    """Where models run. ``auto`` picks CUDA when torch sees a GPU, else the CPU."""

    device: str = _choice("auto", "cpu", "cuda", default="auto")
    threads: int = _range(0, 0, 256)  # 0 = let each library decide
    # A plain sequential pipeline (the LM writes the whole reply, then it is synthesized, then played), for
    # `voiceos bench` to measure the streaming pipeline against; never faster.
    sequential: bool = False


@dataclass(frozen=True)
class AudioOptions:
    input_device: str = "auto"  # name (substring), index, or auto (the system default)
    output_device: str = "auto"
    output_sample_rate: int = _range(0, 0, 192000)  # 0 = play at the voice's own rate
    output_latency_ms: int = _range(100, 5, 2000)  # the output stream's buffer: each reply is heard this much later
    input_sample_rate: int = _range(0, 0, 192000)  # 0 = capture at the microphone's own rate
    barge_in: bool = True  # the user speaking over the assistant stops it
    barge_in_min_ms: int = _range(500, 0, 5000)  # voiced speech over a reply needed to stop it (shorter: ignored)
    reconnect_max_s: float = _range(3.0, 0.5, 600.0)  # longest wait between tries to reopen lost devices


@dataclass(frozen=True)
class VadOptions:
    sample_rate: int = _range(16000, 8000, 48000)
    frame_ms: int = _range(30, 10, 30)
    aggressiveness: int = _range(2, 0, 3)
    pre_roll_ms: int = _range(300, 0, 5000)
    hangover_ms: int = _range(500, 0, 10000)
    speculate_ms: int = _range(120, 0, 10000)  # silence after which end-of-turn work starts early; 0 = off
    speculate_reply: bool = True  # ...the reply too (LM + TTS), played only if the turn ends at that pause
    end_level_db: float = _range(25.0, 0.0, 90.0)  # voice this far below the utterance's level counts as silence
    # for the end of the turn (a fading tail, breath, room noise); 0 = webrtcvad alone decides
    start_ms: int = _range(90, 0, 2000)
    min_speech_ms: int = _range(250, 0, 60000)
    max_utterance_s: float = _range(30.0, 1.0, 600.0)

    def __post_init__(self) -> None:
        if self.frame_ms not in (10, 20, 30):
            raise ValueError("frame_ms must be 10, 20 or 30")
        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError("sample_rate must be 8000, 16000, 32000 or 48000")


@dataclass(frozen=True)
class TurnOptions:
    """When a pause ends the user's turn (voiceos.turn): the silence timer alone, or a turn-completion model."""

    # silence: vad.hangover_ms alone; smart_turn: the turn-completion model (auto: smart_turn where it loads, else
    # silence); words: the pause's transcript ends the turn when it ends a sentence (voiceos.turn.words)
    end_of_turn: str = _choice("auto", "smart_turn", "silence", "words", default="auto")
    check_ms: int = _range(200, 30, 5000)  # silence after which the turn model is asked whether the turn is complete
    threshold: float = _range(0.9, 0.0, 1.0)  # its probability of "complete" that ends the turn there
    max_silence_ms: int = _range(800, 0, 10000)  # with the model: silence that ends a turn it called incomplete
    # a "complete" waits for the pause's transcript (the reply needs it anyway) and is overruled when the words stop
    # mid-phrase ("... of the", "he might be"): voiceos.turn.text
    text_check: bool = True
    threads: int = _range(1, 1, 64)  # ONNX Runtime threads for the model (~35 ms a verdict on one core)

    def __post_init__(self) -> None:
        if self.end_of_turn != "silence" and self.check_ms >= self.max_silence_ms:
            raise ValueError(
                f"check_ms ({self.check_ms}) must be below max_silence_ms ({self.max_silence_ms}):"
                " else the silence ends every turn before the model is asked"
            )


@dataclass(frozen=True)
class WakeOptions:
    """When the daemon answers what it hears (voiceos.wake): everything, or what is addressed to it by name."""

    mode: str = _choice("name", "always", default="name")  # always: a headset, a kiosk
    names: str | None = None  # comma-separated ("Milo, Milo the robot"); null: persona.name
    placement: str = _choice("start", "start_or_end", "anywhere", default="start_or_end")  # where the name may stand
    follow_up_s: float = _range(8.0, 0.0, 600.0)  # after it spoke, this long without the name

    def __post_init__(self) -> None:
        if self.names is not None and not any(part.strip() for part in self.names.split(",")):
            raise ValueError("names must name at least one name (or be null: the persona's name)")


@dataclass(frozen=True)
class AsrOptions:
    """Speech recognition (voiceos.asr): the engine, its model, and the settings each engine reads."""

    engine: str = _choice("whisper", "moonshine", default="moonshine")
    # auto: the engine's embedded model (Whisper tiny.en, Moonshine tiny-en); whisper: any faster-whisper size name,
    # hub id or local CTranslate2 dir; moonshine: a local dir with its ONNX files and tokenizer.bin
    model: str = "auto"
    language: str | None = "en"
    threads: int = _range(0, 0, 256)  # CPU threads for the engine; 0: runtime.threads (or the library's choice)
    # the daemon transcribes the utterance so far every this much talking (0: only at pauses); engines whose cost
    # grows with the audio only (moonshine): Whisper's 30 s window would cost ~300 ms a time
    partial_ms: int = _range(400, 0, 10000)
    # whisper only:
    compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    beam_size: int = _range(1, 1, 16)
    # Re-decode every clip that looks bad (low log-probability too) at temperatures 0.2 ... 1.0 (faster-whisper's
    # default): on noisy speech that tripled the slowest transcriptions (benchmarks/asr_tail.py)
    temperature_fallback: bool = False
    # Re-decode (at those temperatures) only a decode that loops: repeated words or a compressible text
    loop_guard: bool = True
    download_root: str | None = None
    # moonshine only: at most this many tokens per second of audio (and a few more), so a decode cannot run on
    max_tokens_per_s: float = _range(6.5, 1.0, 50.0)
    min_audio_s: float = _range(1.0, 0.0, 10.0)  # shorter clips are padded with silence to this length
    # a transcript whose mean token log-probability is below this is transcribed again by Whisper tiny.en (loaded
    # beside it, with the whisper keys above); null: never. Moonshine is unsure of half the non-native recordings.
    fallback_below: float | None = _range(-0.25, -10.0, 0.0)

    def __post_init__(self) -> None:
        if self.engine == "moonshine" and self.language not in (None, "en"):
            raise ValueError(f"engine moonshine (tiny-en) transcribes English only, not language {self.language!r}")


@dataclass(frozen=True)
class DialogueOptions:
    # Where replies are written: "embedded" in this process (the model below), or "openai": streamed from any server
    # that speaks the OpenAI chat-completions API (llama.cpp's server, vLLM, Ollama, LM Studio) at base_url. The
    # emotion head still reads the embedded model's prefill of the user's turn, locally (voiceos.dialogue.openai_chat).
    backend: str = _choice("embedded", "openai", default="embedded")
    base_url: str | None = None  # openai: the server's API root, e.g. http://127.0.0.1:8080/v1
    server_model: str | None = None  # openai: the model to ask the server for; null: the first it lists
    api_key_env: str | None = None  # openai: the environment variable holding the API key (never the key itself)
    timeout_s: float = _range(15.0, 0.5, 600.0)  # openai: the longest wait for the server's next bytes
    model: str = "embedded"  # embedded SmolLM2-135M-Instruct GGUF; else a Hugging Face id or local directory
    gguf_file: str | None = None
    # How it speaks; the system prompt is persona.name and persona.description, then this, then the facts about the
    # user (voiceos.dialogue.persona).
    system_prompt: str = "Answer in one or two short, natural spoken sentences. Do not use lists, markdown or emoji."
    max_new_tokens: int = _range(80, 1, 4096)
    # stop after this many sentences unless the user asked for detail (voiceos.dialogue.length); 0 = no limit
    max_sentences: int = _range(2, 0, 1000)
    max_prompt_tokens: int = _range(1024, 64, 1_000_000)  # persona + history + message; oldest turns go first
    temperature: float = _range(0.0, 0.0, 5.0)  # 0 = greedy
    top_p: float = _range(0.9, 0.0, 1.0)
    top_k: int = _range(0, 0, 1000)
    repetition_penalty: float = _range(1.1, 1.0, 3.0)
    # with greedy decoding, sample the reply's first opening_tokens tokens at this temperature (variety in how
    # replies open), then go on greedily; 0 = off
    opening_temperature: float = _range(0.0, 0.0, 5.0)
    opening_tokens: int = _range(2, 1, 64)
    seed: int | None = None
    dtype: str = _choice("auto", "float32", "bfloat16", "float16", default="auto")
    # What decodes a GGUF model (the embedded one, or gguf_file in a local directory) on the CPU: llama_cpp
    # (llama.cpp in this process, ~3-4x faster here), torch (transformers' forward over the dequantized weights), or
    # auto: llama.cpp wherever it is installed and the model is a GGUF on the CPU, else torch (voiceos.dialogue.backend)
    decoder: str = _choice("auto", "llama_cpp", "torch", default="auto")
    block_kernel: bool = True  # a GGUF on the CPU in float32: decode from its 4/8-bit blocks (same weights and sums)
    lean_decode: bool = True  # a llama-layout LM on the CPU in float32: decode outside transformers' forward (same ops)
    cache_dir: str | None = None  # dequantized weights; default $XDG_CACHE_HOME/voiceos
    # The fine-tuned LoRA adapter (voiceos train dialogue): "embedded" is the one shipped for the embedded model
    # (used only with it), else a checkpoint directory; null: the base model's replies.
    adapter: str | None = "embedded"

    def __post_init__(self) -> None:
        if self.backend == "openai" and not (self.base_url or "").startswith(("http://", "https://")):
            raise ValueError(
                "backend openai needs base_url: the server's http(s):// API root, e.g. http://127.0.0.1:8080/v1"
            )
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise ValueError("api_key_env must name an environment variable (the key itself never goes in the file)")


@dataclass(frozen=True)
class TtsOptions:
    voice: str = "joe"  # a profile name in voices_dir, or a path to a profile YAML
    voices_dir: str | None = None  # default: the project's voices/ directory
    # Speech starts after the reply's first clause (ending in , ; or :) once it is this long; 0 waits for the whole
    # first sentence. Later chunks are whole sentences (better intonation).
    first_clause_chars: int = _range(24, 0, 1000)


@dataclass(frozen=True)
class SkillOptions:
    """Requests answered without the LM (voiceos.skills): the time and date, timers, reminders, sums and units, what
    it knows about the user, "stop", "say that again". Understood with Home Assistant's intents (hassil)."""

    enabled: bool = True  # false: every turn goes to the dialogue LM
    sentences: str | None = None  # a YAML file of your own sentence templates (hassil format), added to the built-in
    max_timers: int = _range(10, 1, 100)
    max_timer_hours: float = _range(24.0, 0.01, 8784.0)
    max_reminders: int = _range(50, 1, 1000)
    ring_times: int = _range(3, 1, 20)  # a finished timer or due reminder is said this often, until the user speaks
    ring_interval_s: float = _range(8.0, 1.0, 600.0)  # seconds between those announcements


@dataclass(frozen=True)
class LimitOptions:
    max_text_chars: int = _range(2000, 1, 1_000_000)
    max_audio_s: float = _range(600.0, 1.0, 86400.0)


@dataclass(frozen=True)
class PersonaOptions:
    """Who the assistant is: its own short, speakable name and a few lines of character."""

    name: str = "Milo"
    # Measured on the base 135M LM (benchmarks/README.md, "Conversation probes"): longer character lines bought
    # empathy at the cost of factual answers (0.9 -> 0.3); this one keeps them.
    description: str = "You are kind, and you listen well."

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 40 or "\n" in self.name:
            raise ValueError("name must be a short name on one line (1-40 characters)")


@dataclass(frozen=True)
class PrivacyOptions:
    """What voiceos keeps of a conversation beyond the daemon's memory. Both off: nothing is written anywhere."""

    log_transcripts: bool = False  # false: logs show "<redacted N chars>" instead of what was said and answered
    save_transcripts: bool = False  # true: the daemon appends each turn to $XDG_DATA_HOME/voiceos/transcripts.jsonl
    remember: bool = False  # true: the facts the user tells about themselves are kept across restarts (memory.json)


@dataclass(frozen=True)
class Config:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    audio: AudioOptions = field(default_factory=AudioOptions)
    echo: EchoOptions = field(default_factory=EchoOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    turn: TurnOptions = field(default_factory=TurnOptions)
    wake: WakeOptions = field(default_factory=WakeOptions)
    asr: AsrOptions = field(default_factory=AsrOptions)
    dialogue: DialogueOptions = field(default_factory=DialogueOptions)
    persona: PersonaOptions = field(default_factory=PersonaOptions)
    emotion: EmotionOptions = field(default_factory=EmotionOptions)
    tts: TtsOptions = field(default_factory=TtsOptions)
    skills: SkillOptions = field(default_factory=SkillOptions)
    limits: LimitOptions = field(default_factory=LimitOptions)
    privacy: PrivacyOptions = field(default_factory=PrivacyOptions)
    source: str = field(default="<defaults>", compare=False)


def default_config_path() -> Path | None:
    """The file used when none is given: $VOICEOS_CONFIG, the user's file, then the project's config.yaml."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = xdg / "voiceos" / "config.yaml"
    if user.is_file():
        return user
    for candidate in (PACKAGE_DIR / "config.yaml", PACKAGE_DIR.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a config file; ``None`` means :func:`default_config_path` (or built-in defaults)."""
    resolved = Path(path) if path is not None else default_config_path()
    if resolved is None:
        return Config()
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{resolved}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{resolved}: cannot read config file ({err})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{resolved}:{where} invalid YAML ({getattr(err, 'problem', err)})") from None
    return config_from_dict(data or {}, source=str(resolved))


def config_from_dict(data: Any, source: str = "<dict>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    config = _build(Config, {k: v for k, v in data.items()}, source, prefix="", skip={"source"})
    return dataclasses.replace(config, source=source)


def _build(cls: type, data: dict[str, Any], source: str, prefix: str, skip: frozenset[str] | set[str] = frozenset()):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    unknown = sorted(set(map(str, data)) - set(fields))
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"{source}: unknown key '{key}' (expected one of: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        f = fields[name]
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{key}' must be a mapping, got {_describe(value)}")
            values[name] = _build(hint, value, source, prefix=key + ".")
            continue
        values[name] = _check_value(key, value, hint, f, source)
    try:
        return cls(**values)
    except ValueError as err:
        raise ConfigError(f"{source}: '{prefix.rstrip('.')}': {err}") from None


def _check_value(key: str, value: Any, hint: Any, f: dataclasses.Field, source: str) -> Any:
    allowed = _allowed_types(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: '{key}' must be {_type_names(allowed)}, got null")
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{source}: '{key}' must be {_type_names(allowed)}, got {_describe(value)}")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if str in allowed and isinstance(value, int) and not isinstance(value, bool) and int not in allowed:
        value = str(value)  # device indices may be written as numbers
    if not isinstance(value, tuple(t for t in allowed if t is not type(None))):
        raise ConfigError(f"{source}: '{key}' must be {_type_names(allowed)}, got {_describe(value)}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{source}: '{key}' must be one of {', '.join(choices)}, got {value!r}")
    lo, hi = f.metadata.get("range", (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{source}: '{key}' must be between {lo} and {hi}, got {value!r}")
    return value


def _allowed_types(hint: Any) -> tuple[type, ...]:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:  # the options class checks the value itself
        return tuple({type(arg) for arg in typing.get_args(hint)})
    if origin in (typing.Union, types.UnionType):
        return tuple(typing.get_args(hint))
    return (hint,)


def _type_names(allowed: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
