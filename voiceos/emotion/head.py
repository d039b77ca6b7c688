"""The emotion head over the hidden states of one LM layer, saved as safetensors.

The user turn's states at ``layer`` go optionally through a branch of the LM's next ``branch_layers`` layers with
LoRA adapters (:mod:`voiceos.emotion.branch`), are pooled (``mean`` over the user's text, the turn's ``last``
token, or both; ``attn+last`` learns how to weigh the user's tokens) and classified by LayerNorm + Linear (with
``hidden_units``, one GELU layer before the output). A head with a branch must be bound to its LM
(:meth:`EmotionHead.bind`) before it reads states: the checkpoint holds only the adapters, the frozen weights come
from the LM.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voiceos.emotion.branch import EmotionBranch, pool_states

WEIGHTS = "head.safetensors"
CONFIG = "head.json"
BRANCH_PREFIX = "branch."


class EmotionHead(nn.Module):
    def __init__(
        self,
        in_dim: int,
        n_labels: int,
        *,
        pooling: str = "mean+last",
        layer: int = -1,
        dropout: float = 0.1,
        hidden_units: int = 0,
        branch_layers: int = 0,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
    ) -> None:
        super().__init__()
        self.in_dim, self.n_labels, self.pooling = in_dim, n_labels, pooling
        self.layer = layer  # the LM's hidden_states index the head reads (-1: the final output)
        self.hidden_units = hidden_units  # 0: linear
        self.branch_layers, self.lora_rank, self.lora_alpha = branch_layers, lora_rank, lora_alpha
        self.branch: EmotionBranch | None = None  # built by bind()
        self._adapter: dict[str, torch.Tensor] = {}  # loaded adapter weights waiting for bind()
        self.norm = nn.LayerNorm(in_dim)
        self.drop = nn.Dropout(dropout)
        self.hidden = (
            nn.Sequential(nn.Linear(in_dim, hidden_units), nn.GELU(), nn.Dropout(dropout)) if hidden_units else None
        )
        self.out = nn.Linear(hidden_units or in_dim, n_labels)
        # attn+last: the attention query over the user's tokens; zero starts as the plain mean
        self.attn_query = nn.Parameter(torch.zeros(in_dim // 2)) if pooling == "attn+last" else None

    def bind(self, lm: Any) -> EmotionHead:
        """Build the branch from ``lm`` (a causal LM module) and load its adapters; nothing to do without a branch."""
        if not self.branch_layers or self.branch is not None:
            return self
        from voiceos.emotion.features import resolve_layer

        first = resolve_layer(lm, self.layer)
        self.branch = EmotionBranch(lm, first, self.branch_layers, self.lora_rank, self.lora_alpha)
        if self._adapter:
            try:
                missing, unexpected = self.branch.load_state_dict(self._adapter, strict=False)
            except RuntimeError as err:  # the shapes of another LM
                raise ValueError(f"the branch's adapters do not fit ({' '.join(str(err).split())[:200]})") from None
            lost = [k for k in missing if k.endswith((".lora_a", ".lora_b"))]
            if lost or unexpected:
                raise ValueError(f"the emotion branch's adapters do not fit: missing {lost}, unexpected {unexpected}")
            self._adapter = {}
        self.branch.train(self.training)
        return self

    def pool(self, states: torch.Tensor, lengths: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """(b, t, hidden) right-padded states of the head's layer -> the (b, in_dim) float32 features it classifies."""
        if self.branch_layers:
            if self.branch is None:
                raise RuntimeError("this emotion head has an LM branch: bind() it to its dialogue LM first")
            weight = self.branch.lm_weight()
            states = self.branch(states.to(weight.device, weight.dtype), lengths)
        return pool_states(states, lengths, spans, self.pooling, self.attn_query).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.norm(features))
        return self.out(self.hidden(x) if self.hidden is not None else x)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: the head's own weights and the branch's adapters (not its frozen copies)."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(BRANCH_PREFIX)}
        if self.branch is not None:
            state.update(self.branch.adapter_state(BRANCH_PREFIX))
        else:
            state.update({BRANCH_PREFIX + k: v for k, v in self._adapter.items()})
        return state

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        own = {k: v for k, v in state.items() if not k.startswith(BRANCH_PREFIX)}
        adapter = {k.removeprefix(BRANCH_PREFIX): v for k, v in state.items() if k.startswith(BRANCH_PREFIX)}
        if adapter and not self.branch_layers:
            raise ValueError("adapter weights for a head without a branch")
        missing, unexpected = super().load_state_dict(own, strict=False)
        if [k for k in missing if not k.startswith(BRANCH_PREFIX)] or unexpected:
            raise ValueError(f"head weights do not fit: missing {missing}, unexpected {unexpected}")
        if self.branch is not None:
            self.branch.load_state_dict(adapter, strict=False)
        else:
            self._adapter = adapter

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "in_dim": self.in_dim,
            "n_labels": self.n_labels,
            "pooling": self.pooling,
            "layer": self.layer,
        }
        if self.hidden_units:
            config["hidden_units"] = self.hidden_units
        if self.branch_layers:
            config.update(branch_layers=self.branch_layers, lora_rank=self.lora_rank, lora_alpha=self.lora_alpha)
        return config

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.trained_state().items()}
        save_file(state, str(directory / WEIGHTS))
        (directory / CONFIG).write_text(json.dumps(self.config(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> EmotionHead:
        from safetensors.torch import load_file

        directory = Path(directory)
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        head = cls(
            config["in_dim"],
            config["n_labels"],
            pooling=config.get("pooling", "mean+last"),
            layer=config.get("layer", -1),
            hidden_units=config.get("hidden_units", 0),
            branch_layers=config.get("branch_layers", 0),
            lora_rank=config.get("lora_rank", 8),
            lora_alpha=config.get("lora_alpha", 16.0),
        )
        head.load_trained_state(load_file(str(directory / WEIGHTS)))
        return head.eval()


def select(features: torch.Tensor, pooling: str, hidden: int) -> torch.Tensor:
    """The columns of the cached ``mean|last`` features that ``pooling`` uses."""
    if pooling == "mean+last":
        return features
    if pooling == "mean":
        return features[..., :hidden]
    if pooling == "last":
        return features[..., hidden:]
    raise ValueError(f"unknown pooling {pooling!r}")
