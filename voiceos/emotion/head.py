"""The emotion head over pooled hidden-state features of one LM layer: LayerNorm + Linear, or with ``hidden_units``
one GELU layer before the output; saved as safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

WEIGHTS = "head.safetensors"
CONFIG = "head.json"


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
    ) -> None:
        super().__init__()
        self.in_dim, self.n_labels, self.pooling = in_dim, n_labels, pooling
        self.layer = layer  # the LM's hidden_states index the features are pooled from (-1: the final output)
        self.hidden_units = hidden_units  # 0: linear
        self.norm = nn.LayerNorm(in_dim)
        self.drop = nn.Dropout(dropout)
        self.hidden = (
            nn.Sequential(nn.Linear(in_dim, hidden_units), nn.GELU(), nn.Dropout(dropout)) if hidden_units else None
        )
        self.out = nn.Linear(hidden_units or in_dim, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.norm(features))
        return self.out(self.hidden(x) if self.hidden is not None else x)

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS))
        config = {"in_dim": self.in_dim, "n_labels": self.n_labels, "pooling": self.pooling, "layer": self.layer}
        if self.hidden_units:
            config["hidden_units"] = self.hidden_units
        (directory / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> EmotionHead:
        from safetensors.torch import load_file

        directory = Path(directory)
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        pooling, layer = config.get("pooling", "mean+last"), config.get("layer", -1)
        hidden_units = config.get("hidden_units", 0)
        head = cls(config["in_dim"], config["n_labels"], pooling=pooling, layer=layer, hidden_units=hidden_units)
        head.load_state_dict(load_file(str(directory / WEIGHTS)))
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
