"""One decoded token through a llama-layout LM without transformers' per-call machinery.

A 135M model spends as long in the framework around each decoded token (module calls, mask and cache bookkeeping,
growing the KV cache by concatenation: ~120 small tensors a token) as in the products themselves. This step runs
the same operations in the same order for one token: RMSNorm, the q/k/v products, rotary embeddings, attention
over the KV cache (the same ``scaled_dot_product_attention`` call), the output product, the gated MLP, the final
norm and the output matrix. So its logits are those of the model's own forward. The differences:

- q, k and v (and gate and up) share their input, so where their weights are GGUF blocks (:mod:`blocks`) they are
  one kernel call over the rows of all three (the row products are the same);
- the KV cache grows in place inside a buffer with spare room (a transformers ``DynamicCache`` whose layers hold
  views of it, so prefills, crops and copies work on it as before) instead of being copied on every token.

Only a float32 llama-layout model on the CPU qualifies (no biases, silu MLP, plain rotary embeddings, plain or
block Linears, with or without the dialogue adapter's low-rank term beside them; another wrapper does not):
anything else decodes through the model's forward as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from voiceos.dialogue.adapter import LowRankAdapted, unwrapped
from voiceos.dialogue.blocks import BlockLinear, block_matvec, fuse_block_rows

log = logging.getLogger(__name__)

SPARE_TOKENS = 256  # room a KV buffer is given beyond what it holds when it is (re)allocated
Projection = Callable[[torch.Tensor], torch.Tensor]  # (1, in) -> (1, out) float32


@dataclass(frozen=True)
class _Layer:
    input_norm: torch.Tensor
    qkv: Projection  # -> q, k and v side by side
    out: Projection
    post_norm: torch.Tensor
    gate_up: Projection  # -> gate and up side by side
    down: Projection


class LlamaDecodeStep:
    """``step(token, cache)``: the logits (1, vocab) after feeding ``token`` at position ``cache.get_seq_length()``,
    with the token's keys and values appended to ``cache``. Build it with :meth:`build`."""

    def __init__(self, model: Any, layers: list[_Layer]) -> None:
        config = model.config
        self.model = model
        self.layers = layers
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        self.eps = float(config.rms_norm_eps)
        self.scale = self.head_dim**-0.5
        self.embed = model.model.embed_tokens.weight
        self.final_norm = model.model.norm.weight
        self.rotary = model.model.rotary_emb
        self.lm_head = _projection([model.lm_head])

    @classmethod
    def build(cls, model: Any) -> LlamaDecodeStep | None:
        """The step for ``model``, or None (logged) when it is not a float32 llama-layout model on the CPU."""
        problem = _unsupported(model)
        if problem:
            log.info("dialogue LM decodes through the model's forward: %s", problem)
            return None
        layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            layers.append(
                _Layer(
                    input_norm=layer.input_layernorm.weight,
                    qkv=_projection([attn.q_proj, attn.k_proj, attn.v_proj]),
                    out=_projection([attn.o_proj]),
                    post_norm=layer.post_attention_layernorm.weight,
                    gate_up=_projection([mlp.gate_proj, mlp.up_proj]),
                    down=_projection([mlp.down_proj]),
                )
            )
        return cls(model, layers)

    def __call__(self, token: int, cache: Any) -> torch.Tensor:
        position = cache.get_seq_length()
        with torch.inference_mode():
            x = self.embed[token].unsqueeze(0)  # (1, hidden)
            cos, sin = self.rotary(x, torch.tensor([[position]]))
            cos, sin = cos.view(1, -1), sin.view(1, -1)
            q_width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
            half = self.head_dim // 2
            for index, layer in enumerate(self.layers):
                qkv = layer.qkv(self._norm(x, layer.input_norm))
                qk = qkv[:, : q_width + kv_width].view(self.heads + self.kv_heads, self.head_dim)
                rotated = torch.cat((-qk[:, half:], qk[:, :half]), dim=-1)  # transformers' rotate_half
                qk = (qk * cos) + (rotated * sin)
                keys, values = _append(
                    cache.layers[index],
                    qk[self.heads :].view(1, self.kv_heads, 1, self.head_dim),
                    qkv[:, q_width + kv_width :].view(1, self.kv_heads, 1, self.head_dim),
                    position,
                )
                attended = F.scaled_dot_product_attention(
                    qk[: self.heads].view(1, self.heads, 1, self.head_dim),
                    keys,
                    values,
                    scale=self.scale,
                    enable_gqa=self.heads != self.kv_heads,
                )
                x = x + layer.out(attended.reshape(1, q_width))
                gate_up = layer.gate_up(self._norm(x, layer.post_norm))
                gate, up = gate_up.chunk(2, dim=-1)
                x = x + layer.down(F.silu(gate) * up)
            return self.lm_head(self._norm(x, self.final_norm)).float()

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """LlamaRMSNorm, op for op (so the results are the model's own)."""
        variance = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(variance + self.eps))


def _append(layer: Any, key: torch.Tensor, value: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Write one token's key and value at ``position`` of a transformers cache layer; the layer's keys and values
    become views of a buffer with spare room (reallocated when the layer's tensors are not views of it any more, as
    after a prefill, which concatenates)."""
    buffers = getattr(layer, "_voiceos_kv", None)
    if (
        buffers is None
        or buffers[0].shape[2] <= position
        or layer.keys.data_ptr() != buffers[0].data_ptr()
        or layer.values.data_ptr() != buffers[1].data_ptr()
        or layer.keys.stride() != buffers[0].stride()
    ):
        shape = (*key.shape[:2], position + 1 + SPARE_TOKENS, key.shape[-1])
        buffers = (key.new_empty(shape), value.new_empty(shape))
        if position:
            buffers[0][:, :, :position].copy_(layer.keys)
            buffers[1][:, :, :position].copy_(layer.values)
        layer._voiceos_kv = buffers
        layer.is_initialized = True
    buffers[0][:, :, position : position + 1].copy_(key)
    buffers[1][:, :, position : position + 1].copy_(value)
    layer.keys, layer.values = buffers[0][:, :, : position + 1], buffers[1][:, :, : position + 1]
    return layer.keys, layer.values


def _projection(linears: Sequence[nn.Linear | LowRankAdapted]) -> Projection:
    """The outputs of ``linears`` (same input) side by side: one kernel call when all read blocks of one kind; the
    low-rank terms of adapted ones (:mod:`adapter`) added to their columns after it."""
    base = _base_projection([unwrapped(m) for m in linears])
    adapted = [(m, start) for m, start in zip(linears, _starts(linears), strict=True) if isinstance(m, LowRankAdapted)]
    if not adapted:
        return base

    def with_low_rank(x: torch.Tensor) -> torch.Tensor:
        y = base(x)
        for module, start in adapted:
            if module.enabled:
                y[:, start : start + module.out_features] += module.low_rank(x)
        return y

    return with_low_rank


def _starts(linears: Sequence[nn.Linear | LowRankAdapted]) -> list[int]:
    starts, at = [], 0
    for m in linears:
        starts.append(at)
        at += m.out_features
    return starts


def _base_projection(modules: Sequence[nn.Module]) -> Projection:
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    assert len(linears) == len(modules), "_unsupported() lets only Linears through"
    block_linears = [m for m in linears if isinstance(m, BlockLinear)]
    fused = fuse_block_rows(block_linears) if len(block_linears) == len(linears) else None
    if fused is not None:
        blocks, kind, rows = fused
        return lambda x: block_matvec(kind, blocks, rows, x)
    weights = [m.weight for m in linears]
    if len(weights) == 1:
        weight = weights[0]
        return lambda x: F.linear(x, weight)
    return lambda x: torch.cat([F.linear(x, w) for w in weights], dim=-1)


def _unsupported(model: Any) -> str:
    """Why ``model`` cannot take the step ("" when it can)."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) != "llama":
        return f"the model type is {getattr(config, 'model_type', None)!r}, not llama"
    if model.dtype != torch.float32 or model.device.type != "cpu":
        return "the step is for float32 on the CPU"
    rope = getattr(config, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default" or getattr(config, "hidden_act", "silu") != "silu":
        return "rotary scaling or an activation other than silu"
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        return "biased projections"
    if getattr(config, "_attn_implementation", "sdpa") != "sdpa":
        return f"attention implementation {getattr(config, '_attn_implementation', None)!r}"
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj):
            if type(unwrapped(linear)) not in (nn.Linear, BlockLinear) or linear.bias is not None:
                return f"a changed projection ({type(linear).__name__})"
    if type(model.lm_head) not in (nn.Linear, BlockLinear):
        return f"a changed output layer ({type(model.lm_head).__name__})"
    return ""
