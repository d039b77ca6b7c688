"""``voiceos doctor``: what is installed, which models are found, which devices can be used."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable
from dataclasses import dataclass

from voiceos.config import Config
from voiceos.errors import VoiceosError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True

    def as_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "required": self.required}


def _check(name: str, probe: Callable[[], str], required: bool = True) -> Check:
    try:
        return Check(name, True, probe(), required)
    except VoiceosError as err:
        return Check(name, False, str(err), required)
    except Exception as err:  # doctor reports every failure instead of stopping at the first
        return Check(name, False, f"{type(err).__name__}: {err}".splitlines()[0], required)


def _versions() -> str:
    names = (
        "torch",
        "torchaudio",
        "transformers",
        "faster-whisper",
        "ctranslate2",
        "piper-tts",
        "onnxruntime",
        "sounddevice",
        "webrtcvad-wheels",
    )
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} MISSING")
    missing = [f for f in found if f.endswith("MISSING")]
    if missing:
        raise VoiceosError(
            f"missing packages: {', '.join(m.split()[0] for m in missing)} (run make say or make install)"
        )
    return f"python {platform.python_version()}; " + ", ".join(found)


def _libraries() -> str:
    """The install's self-check (voiceos/selfcheck.py): the heavy libraries load together, each in a child process."""
    from voiceos.selfcheck import LIBRARIES, check_libraries

    failures = check_libraries()
    if failures:
        raise VoiceosError("; ".join(f.message() for f in failures))
    return f"{', '.join(lib.module for lib in LIBRARIES)} load"


def _lock() -> str:
    from voiceos.selfcheck import LOCK_PATH, describe_differences, lock_differences

    if not LOCK_PATH.is_file():
        return "no requirements.lock beside this installation (not a source checkout): nothing to compare"
    differences = lock_differences()
    if differences:
        raise VoiceosError(f"differs from {LOCK_PATH.name}: {describe_differences(differences)}")
    return f"every package is the version {LOCK_PATH.name} pins"


def _cuda() -> str:
    import torch

    if torch.cuda.is_available():
        return f"CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}"
    return f"no CUDA GPU visible to torch {torch.__version__} (models run on the CPU)"


def _device_plan(config: Config) -> str:
    from voiceos.models import plan_for

    plan = plan_for(config)
    note = f" ({plan.whisper_note})" if plan.whisper_note else ""
    return (
        f"whisper on {plan.whisper_device}/{plan.whisper_compute_type}{note}, LM on {plan.torch_device}/{plan.lm_dtype}"
    )


def _whisper(config: Config) -> str:
    from voiceos.models import resolve_whisper_model

    return f"{config.asr.model} -> {resolve_whisper_model(config.asr.model)}"


def _lm(config: Config) -> str:
    from voiceos.models import EMBEDDED_LM, embedded_lm_gguf

    if config.dialogue.model == EMBEDDED_LM:
        return f"embedded SmolLM2-135M-Instruct -> {embedded_lm_gguf()}"
    return f"{config.dialogue.model} (loaded through transformers; may download on first use)"


def _dialogue_server(config: Config) -> str:
    """dialogue.backend: openai: is the server there, and which model answers?"""
    import dataclasses
    import time

    from voiceos.dialogue.openai_chat import OpenAIChat
    from voiceos.models import plan_for

    options = dataclasses.replace(config.dialogue, timeout_s=min(config.dialogue.timeout_s, 5.0))
    start = time.perf_counter()
    model = OpenAIChat.load(options, plan_for(config), emotion=False).model()
    return f"{options.base_url} serves {model} ({(time.perf_counter() - start) * 1000:.0f} ms to list its models)"


def _decoder(config: Config) -> str:
    """Which decoder writes the embedded model's replies on this machine, and why; for llama.cpp, the CPU features
    its build uses."""
    from voiceos.dialogue.backend import choose_decoder
    from voiceos.models import plan_for

    decoder, why = choose_decoder(config.dialogue, plan_for(config))
    if decoder != "llama_cpp":
        return f"{decoder}: {why}"
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    features = [part.split("=")[0].split(":")[-1].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return f"{decoder}: {why}; its build uses {' '.join(features) or 'no SIMD extension'}"


def _block_kernel(config: Config) -> str:
    from voiceos.dialogue import blocks

    if not config.dialogue.block_kernel:
        return "off (dialogue.block_kernel: false): the LM decodes from float32 weights"
    if blocks.kernel_library() is None:
        raise VoiceosError(f"the LM decodes from float32 weights, ~1.5x slower: {blocks.kernel_problem()}")
    threads = blocks._threads()
    if threads == 1 and config.runtime.threads != 1:
        return (
            "ready, on 1 thread: OpenMP does not wait passively in this process (OMP_WAIT_POLICY set otherwise, or "
            "torch loaded before voiceos)"
        )
    return f"ready: a GGUF LM on the CPU decodes from its 4/8-bit blocks ({threads} threads)"


def _voice(config: Config) -> str:
    from voiceos.tts.voices import load_voice

    voice = load_voice(config.tts.voice, config.tts.voices_dir)
    return f"{voice.name} ({voice.engine}) -> {voice.model_path}"


def _audio_output(config: Config) -> str:
    from voiceos.audio.playback import list_devices, resolve_device

    devices = list_devices()
    if not devices:
        raise VoiceosError("no audio devices (no sound server?): 'voiceos say' writes WAV files instead")
    out = resolve_device(config.audio.output_device, "output")
    inp = resolve_device(config.audio.input_device, "input")
    output, microphone = _device_name(devices, out, "output"), _device_name(devices, inp, "input")
    return f"{len(devices)} devices; output {output}, input {microphone}"


def _device_name(devices: list[dict], index: int | None, kind: str) -> str:
    if index is None:
        default = [d for d in devices if d[f"is_default_{kind}"]]
        return f"default ({default[0]['name']})" if default else "default"
    return next((d["name"] for d in devices if d["index"] == index), str(index))


def _end_of_turn(config: Config) -> str:
    from voiceos.turn import load_end_of_turn

    return load_end_of_turn(config.turn).describe()


def _wake(config: Config) -> str:
    from voiceos.wake import load_turn_start

    start = load_turn_start(config.wake, config.persona.name)
    return f"{start.name}: {start.how_to_talk()}"


def run_checks(config: Config) -> list[Check]:
    return [
        Check("config", True, config.source),
        _check("packages", _versions),
        _check("libraries", _libraries),
        _check("lock", _lock, required=False),
        _check("cuda", _cuda, required=False),
        _check("device plan", lambda: _device_plan(config)),
        _check("whisper model", lambda: _whisper(config)),
        _check("dialogue model", lambda: _lm(config)),
        *([_check("dialogue server", lambda: _dialogue_server(config))] if config.dialogue.backend == "openai" else []),
        *([_check("dialogue decoder", lambda: _decoder(config))] if config.dialogue.backend == "embedded" else []),
        _check("LM block kernel", lambda: _block_kernel(config), required=False),
        _check("voice", lambda: _voice(config)),
        _check("end of turn", lambda: _end_of_turn(config), required=config.turn.end_of_turn == "smart_turn"),
        _check("wake", lambda: _wake(config)),
        _check("audio devices", lambda: _audio_output(config), required=False),
    ]
