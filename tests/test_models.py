"""Device planning: which stage runs where, decided once."""

from __future__ import annotations

import pytest

from voiceos import models


def test_without_a_gpu_everything_runs_on_the_cpu():
    if models.cuda_available():
        pytest.skip("this machine has a GPU")
    plan = models.plan_devices("auto")
    assert (plan.torch_device, plan.asr.device, plan.asr.compute_type, plan.lm_dtype) == (
        "cpu",
        "cpu",
        "int8",
        "float32",
    )
    assert plan.asr.note == ""
    assert models.whisper_cuda_problem() == "CTranslate2 sees no CUDA device"  # the real probe, no GPU here
    moonshine = models.plan_devices("auto", asr_engine="moonshine", asr_threads=2).asr
    assert (moonshine.engine, moonshine.device, moonshine.compute_type, moonshine.threads) == (
        "moonshine",
        "cpu",
        "float32",
        2,
    )


def test_whisper_stays_on_the_cpu_when_ctranslate2_cannot_use_the_gpu(monkeypatch):
    """torch sees a GPU but CTranslate2 lacks CUDA 12's cuBLAS: the LM goes to the GPU, Whisper stays on the CPU in
    int8 and the plan says why (doctor shows it), instead of failing at the first utterance."""
    problem = f"CTranslate2 needs CUDA 12's libcublas.so.12: {models.GPU_EXTRA_HINT}"
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    monkeypatch.setattr(models, "whisper_cuda_problem", lambda: problem)
    plan = models.plan_devices("cuda", lm_dtype="bfloat16")
    assert (plan.torch_device, plan.asr.device, plan.asr.compute_type) == ("cuda", "cpu", "int8")
    assert plan.asr.note == problem and plan.onnx_providers[0] == "CUDAExecutionProvider"

    monkeypatch.setattr(models, "whisper_cuda_problem", lambda: None)
    plan = models.plan_devices("auto", lm_dtype="bfloat16")
    assert (plan.asr.device, plan.asr.compute_type, plan.asr.note) == ("cuda", "float16", "")


def test_moonshine_stays_on_the_cpu_when_onnxruntime_has_no_cuda_provider(monkeypatch):
    """The lock installs onnxruntime's CPU build: with a GPU, the LM goes there and Moonshine says why it does not."""
    monkeypatch.setattr(models, "cuda_available", lambda: True)
    plan = models.plan_devices("cuda", lm_dtype="bfloat16", asr_engine="moonshine")
    assert (plan.torch_device, plan.asr.device) == ("cuda", "cpu")
    assert "no CUDA provider" in plan.asr.note and "moonshine on cpu" in plan.asr.describe()


def test_a_missing_library_is_reported_not_raised():
    assert models._load_shared_library("libvoiceos-no-such-library.so.1") is False
    assert models._load_shared_library("libm.so.6") is True


def test_a_library_is_found_in_an_nvidia_wheel_folder_on_the_python_path(tmp_path, monkeypatch):
    """Where pip puts nvidia-cublas-cu12 (site-packages/nvidia/cublas/lib), without LD_LIBRARY_PATH."""
    import shutil
    import sys
    from pathlib import Path

    folders = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
    source = next(path for d in folders if (path := Path(d) / "libm.so.6").is_file())
    lib_dir = tmp_path / "nvidia" / "fakeblas" / "lib"
    lib_dir.mkdir(parents=True)
    shutil.copy(source, lib_dir / "libvoiceos-fakeblas.so.12")
    assert models._load_shared_library("libvoiceos-fakeblas.so.12") is False
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    assert models._load_shared_library("libvoiceos-fakeblas.so.12") is True


def test_auto_dtype_on_a_gpu_is_float32_for_the_embedded_lm_and_bfloat16_for_others(monkeypatch):
    """Measured on an H200: for the 135M embedded LM bfloat16 is no faster there and changes half of the replies."""
    import torch

    monkeypatch.setattr(models, "cuda_available", lambda: True)
    monkeypatch.setattr(models, "whisper_cuda_problem", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert models.plan_devices("cuda", lm_model=models.EMBEDDED_LM).lm_dtype == "float32"
    assert models.plan_devices("cuda", lm_model="HuggingFaceTB/SmolLM2-1.7B-Instruct").lm_dtype == "bfloat16"
    assert models.plan_devices("cuda", lm_dtype="bfloat16", lm_model=models.EMBEDDED_LM).lm_dtype == "bfloat16"
    assert models.plan_devices("cpu", lm_model="HuggingFaceTB/SmolLM2-1.7B-Instruct").lm_dtype == "float32"
