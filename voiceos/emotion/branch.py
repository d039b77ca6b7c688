"""A branch of the dialogue LM's own layers for the emotion head, fine-tuned with LoRA adapters.

The head reads the LM's hidden states at one layer of the reply's prefill. A linear head over those frozen states
tops out near 0.50 macro-F1 on GoEmotions. Fine-tuning the LM itself would help the head but change every reply
(the adapted layers would feed the next token too), and the emotion must come from the reply's own prefill. So the
head gets its own copies of the next ``n`` decoder layers, initialised from the LM, with low-rank adapters on every
projection (q, k, v, o, gate, up, down): they run over the user turn's states after the prefill has produced them
(a few dozen tokens through ``n`` layers: milliseconds), the reply's layers stay untouched, and nothing reads the
prompt twice. Only the adapters are trained and saved (~0.3 MB per layer at rank 8); the frozen weights come from
the LM at load time, so a checkpoint fits only the LM it was trained on.

With zero adapters (``lora_b`` starts at zero) the branch reproduces the LM's own next layers exactly for a prompt
without a cached system turn (tests/test_emotion_branch.py checks it).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from voiceos.dialogue.adapter import unwrapped

PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
ADAPTER_SUFFIXES = (".lora_a", ".lora_b")


class LoRALinear(nn.Module):
    """``base(x) + x A^T B^T * alpha / rank`` with ``base`` frozen (Hu et al., 2021)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        dtype, device = base.weight.dtype, base.weight.device  # the LM's: a GPU LM gets GPU adapters
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=dtype, device=device))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


class EmotionBranch(nn.Module):
    """Copies of the LM's decoder layers ``first .. first + n - 1`` (``layers[i]`` maps ``hidden_states[i]`` to
    ``hidden_states[i + 1]``) with LoRA on every projection, causal over the given tokens."""

    def __init__(self, lm: Any, first: int, n: int, rank: int, alpha: float) -> None:
        super().__init__()
        decoder = lm.model
        if not 0 <= first <= len(decoder.layers) - n:
            raise ValueError(f"a branch of {n} layers after hidden state {first} does not fit {len(decoder.layers)}")
        self.layers = nn.ModuleList(copy.deepcopy(decoder.layers[first + i]) for i in range(n))
        for layer in self.layers:
            for p in layer.parameters():
                p.requires_grad_(False)
            for part, names in PROJECTIONS.items():
                module = getattr(layer, part)
                for name in names:
                    projection = unwrapped(getattr(module, name))
                    assert isinstance(projection, nn.Linear), f"{part}.{name} is a {type(projection).__name__}"
                    setattr(module, name, LoRALinear(projection, rank, alpha))
        self.rotary = copy.deepcopy(decoder.rotary_emb)

    def lm_weight(self) -> torch.Tensor:
        """A weight of the LM's own (the first layer's query projection): the dtype and device the branch runs in."""
        projection = self.layers[0].get_submodule("self_attn.q_proj")
        assert isinstance(projection, LoRALinear)
        return projection.base.weight

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(b, t, hidden) right-padded states, ``lengths`` (b,) real tokens each -> the branch's (b, t, hidden)."""
        b, t, _ = states.shape
        positions = torch.arange(t, device=states.device).unsqueeze(0).expand(b, t)
        position_embeddings = self.rotary(states, positions)
        valid = positions < lengths.to(states.device).unsqueeze(1)
        causal = torch.ones(t, t, dtype=torch.bool, device=states.device).tril()
        allowed = (causal.unsqueeze(0) & valid.unsqueeze(1)).unsqueeze(1)  # (b, 1, query, key)
        # An additive mask: eager attention and SDPA both read it the same way.
        mask = torch.zeros(allowed.shape, dtype=states.dtype, device=states.device)
        mask = mask.masked_fill(~allowed, torch.finfo(states.dtype).min)
        x = states
        for layer in self.layers:
            out = layer(x, attention_mask=mask, position_ids=positions, position_embeddings=position_embeddings)
            x = out[0] if isinstance(out, tuple) else out
        return x

    def adapter_state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The trained part only: every ``lora_a`` / ``lora_b``."""
        return {prefix + k: v for k, v in self.state_dict().items() if k.endswith(ADAPTER_SUFFIXES)}


def pool_states(
    states: torch.Tensor,
    lengths: torch.Tensor,
    spans: torch.Tensor,
    pooling: str,
    query: torch.Tensor | None = None,
) -> torch.Tensor:
    """(b, t, hidden) -> (b, features): ``mean`` over each user text span, ``last`` real token, or both (mean|last);
    ``attn+last``: an attention-weighted mean over the span (weights: softmax of the states times the head's learnt
    ``query``; a zero query gives the plain mean), then the last token."""
    t = states.shape[1]
    positions = torch.arange(t, device=states.device).unsqueeze(0)
    spans = spans.to(states.device)
    inside = (positions >= spans[:, :1]) & (positions < spans[:, 1:])
    last = states[torch.arange(len(states), device=states.device), lengths.to(states.device) - 1]
    if pooling == "attn+last":
        if query is None:
            raise ValueError("attention pooling needs the head's query vector")
        scores = states @ query.to(states.device, states.dtype) / math.sqrt(states.shape[-1])
        scores = scores.masked_fill(~inside, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=1) * inside  # (a row without span tokens pools to zeros, like the mean)
        return torch.cat([(states * weights.unsqueeze(-1)).sum(dim=1), last], dim=-1)
    mean = (states * inside.unsqueeze(-1)).sum(dim=1) / inside.sum(dim=1, keepdim=True).clamp(min=1)
    if pooling == "mean":
        return mean
    if pooling == "last":
        return last
    if pooling == "mean+last":
        return torch.cat([mean, last], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}")
