"""The fine-tuned dialogue adapter at run time: peft's LoRA checkpoint, applied as a low-rank term beside each weight.

``voiceos train dialogue`` trains LoRA adapters with peft and saves them in peft's own format (``adapter_config.json``
and ``adapter_model.safetensors``: any peft user can load them). Here they are read without peft: each adapted
projection becomes :class:`LowRankAdapted`, ``base(x) + (x A^T) (s B)^T`` with ``s = alpha / r``, and its base is left
as it was, so the GGUF block kernel keeps serving the base weights (merging the adapter into the float32 weights
would break the blocks' match with them and send every product back to BLAS). The lean decode step adds the same
low-rank term after its fused block products. Two matrix-vector products of rank ``r`` per projection cost little
beside the base product; ``tests/test_dialogue_adapter.py`` checks that the tokens equal the merged model's.

The adapter only touches layers from the emotion head's reading point on, so the states the head reads (and the
layers its branch copies, taken from the base weights) are the base model's: its dev figures do not move.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from voiceos import models
from voiceos.config import DialogueOptions
from voiceos.errors import ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"  # dialogue.adapter's value for the adapter shipped with the embedded model
EMBEDDED_ADAPTER = Path(__file__).with_name("checkpoint")
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<path>.+)\.lora_(?P<part>[AB])(?:\.default)?\.weight$")


class AdapterError(ValueError):
    """An adapter directory that cannot be applied to this model (one line, naming the directory)."""


class LowRankAdapted(nn.Module):
    """``base(x) + (x @ down.T) @ up.T`` (``up`` holds LoRA's B times alpha / r); ``base`` is unchanged."""

    down: torch.Tensor  # buffers, registered below
    up: torch.Tensor
    in_features: int
    out_features: int

    def __init__(self, base: nn.Linear, down: torch.Tensor, up: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        self.register_buffer("down", down.to(dtype=weight.dtype, device=weight.device).contiguous())  # (r, in)
        self.register_buffer("up", up.to(dtype=weight.dtype, device=weight.device).contiguous())  # (out, r)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.enabled = True  # off: the base projection alone (see set_adapter_enabled)

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (what the block kernel's check and the decode step's fallback read)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(nn.functional.linear(x, self.down), self.up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.low_rank(x) if self.enabled else self.base(x)

    def merged_weight(self) -> torch.Tensor:
        return self.base.weight + self.up @ self.down


def read_adapter(directory: Path) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """peft's config and, per module path, (A, B * alpha / r) in float32."""
    from safetensors.torch import load_file

    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise AdapterError(f"dialogue adapter {directory} has no {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        rank, alpha = int(config["r"]), float(config["lora_alpha"])
        tensors = load_file(str(weights_path))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AdapterError(f"dialogue adapter {directory} is unreadable: {err}") from None
    scale = alpha / rank
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterError(f"dialogue adapter {directory} holds {key}, which is not a LoRA weight")
        parts.setdefault(match["path"], {})[match["part"]] = tensor.float()
    pairs = {}
    for path, part in parts.items():
        if set(part) != {"A", "B"}:
            raise AdapterError(f"dialogue adapter {directory} lacks half of the LoRA pair of {path}")
        pairs[path] = (part["A"], part["B"] * scale)
    return config, pairs


def apply_adapter(model: nn.Module, directory: Path) -> int:
    """Wrap every projection the adapter in ``directory`` names; the number wrapped. Checks every shape first, so
    a wrong adapter changes nothing."""
    _, pairs = read_adapter(directory)
    targets = []
    for path, (down, up) in pairs.items():
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise AdapterError(f"dialogue adapter {directory} adapts {path}, which this model does not have") from None
        shape_ok = (
            hasattr(module, "in_features")
            and down.shape == (down.shape[0], module.in_features)
            and up.shape == (module.out_features, down.shape[0])
        )
        if isinstance(module, LowRankAdapted) or not shape_ok:
            raise AdapterError(f"dialogue adapter {directory} does not fit {path} of this model (trained for another)")
        targets.append((path, cast(nn.Linear, module), down, up))  # a projection: checked by its shape above
    for path, module, down, up in targets:
        parent_path, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent_path), attr, LowRankAdapted(module, down, up))
    return len(targets)


def set_adapter_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch every adapted projection of ``model`` on or off (off: the base model); the number switched."""
    adapted = [m for m in model.modules() if isinstance(m, LowRankAdapted)]
    for module in adapted:
        module.enabled = enabled
    return len(adapted)


def unwrapped(module: nn.Module) -> nn.Module:
    """The base projection of an adapted one (for copies that must see the base weights), else the module itself."""
    return module.base if isinstance(module, LowRankAdapted) else module


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every adapter merged into plain float32 Linears (the reference in tests)."""
    import copy

    clone = copy.deepcopy(model)
    for path, module in list(clone.named_modules()):
        if isinstance(module, LowRankAdapted):
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            with torch.no_grad():
                plain.weight.copy_(module.merged_weight())
                if module.bias is not None:
                    plain.bias.copy_(module.bias)
            parent_path, _, attr = path.rpartition(".")
            setattr(clone.get_submodule(parent_path), attr, plain)
    return clone


def apply_configured_adapter(model: Any, options: DialogueOptions, name: str) -> str | None:
    """Apply ``options.adapter`` (see :mod:`voiceos.dialogue.adapter`); its directory, or None."""
    if options.adapter is None:
        return None
    if options.adapter == EMBEDDED:
        if options.model != models.EMBEDDED_LM or not (EMBEDDED_ADAPTER / CONFIG_FILE).is_file():
            return None  # the shipped adapter fits the embedded model only
        directory = EMBEDDED_ADAPTER
    else:
        directory = Path(options.adapter).expanduser()
    try:
        count = apply_adapter(model, directory)
    except AdapterError as err:
        raise ModelLoadError(f"{err}; set dialogue.adapter: null to use {name} without it") from None
    log.debug("dialogue adapter %s: %d projections", directory, count)
    return str(directory)
