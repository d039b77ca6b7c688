"""Fitting the emotion head: on cached pooled features (a linear or one-hidden-layer head) or, with an LM branch,
on cached token states (adapters and head together); dev evaluation every epoch, the best epoch kept.

Used by :mod:`voiceos.emotion.train`, which reads the data, caches what the frozen LM computes and writes the
checkpoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from voiceos.emotion.branch import pool_states
from voiceos.emotion.classifier import head_probabilities
from voiceos.emotion.features import TokenStates
from voiceos.emotion.head import EmotionHead
from voiceos.emotion.labels import LABELS

if TYPE_CHECKING:
    from voiceos.emotion.train_options import TrainOptions

log = logging.getLogger(__name__)


def set_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def f1_scores(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(range(len(LABELS)))
    return {
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "n": len(gold),
    }


def evaluate(head: EmotionHead, feats: torch.Tensor, gold: np.ndarray) -> dict[str, float]:
    head.eval()
    with torch.no_grad():
        pred = head(feats).argmax(dim=-1).numpy()
    return f1_scores(gold, pred)


def dev_score(metrics: dict[str, dict[str, float]]) -> float:
    return (metrics["goemotions"]["macro_f1"] + metrics["meld"]["weighted_f1"]) / 2


class BestEpoch:
    """Early stopping: keeps a copy of the weights of the best dev score so far, and says when ``patience`` epochs
    in a row have not beaten it."""

    def __init__(self, patience: int) -> None:
        self.patience, self.stale = patience, 0
        self.score = -1.0
        self.metrics: dict[str, Any] = {}
        self.state: dict[str, torch.Tensor] = {}

    def stop_after(
        self, epoch: int, score: float, metrics: dict[str, Any], state: Callable[[], dict[str, torch.Tensor]]
    ) -> bool:
        if not self.state or score > self.score:
            self._keep(epoch, score, metrics, state())
            self.stale = 0
            return False
        self.stale += 1
        return self.stale >= self.patience

    def offer(self, epoch: int | str, score: float, metrics: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        """A candidate that is not an epoch's own weights (an average of epochs): kept if it beats the best."""
        if score > self.score:
            self._keep(epoch, score, metrics, state)

    def _keep(self, epoch: int | str, score: float, metrics: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        self.score, self.metrics, self.state = score, {"epoch": epoch, **metrics}, snapshot(state)

    def result(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        epochs = sum(isinstance(h["epoch"], int) for h in history)
        return {**self.metrics, "dev_score": self.score, "epochs_run": epochs, "history": history}


def fit_head(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    dev: dict[str, tuple[torch.Tensor, np.ndarray]],
    options: TrainOptions,
    pooling: str,
    *,
    progress: bool = True,
) -> tuple[EmotionHead, dict[str, Any]]:
    """Class-weighted training with per-epoch dev evaluation and early stopping; returns the best head."""
    from tqdm import tqdm

    set_seeds(options.seed)
    head = EmotionHead(
        train_x.shape[1], len(LABELS), pooling=pooling, layer=options.layer, hidden_units=options.hidden_units
    )
    counts = torch.bincount(train_y, minlength=len(LABELS)).float()
    weights = counts.sum() / (len(LABELS) * counts.clamp(min=1))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    gen = torch.Generator().manual_seed(options.seed)
    best, history = BestEpoch(options.patience), []
    bar = tqdm(range(options.epochs), desc=f"train {pooling}", unit="epoch", disable=not progress)
    for epoch in bar:
        head.train()
        perm = torch.randperm(len(train_y), generator=gen)
        total = 0.0
        for i in range(0, len(perm), options.batch_size):
            idx = perm[i : i + options.batch_size]
            opt.zero_grad()
            loss = loss_fn(head(train_x[idx]), train_y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        metrics = {name: evaluate(head, x, y) for name, (x, y) in dev.items()}
        score = dev_score(metrics)
        history.append({"epoch": epoch + 1, "train_loss": total / len(perm), "dev_score": score})
        bar.set_postfix(loss=f"{total / len(perm):.3f}", dev=f"{score:.3f}")
        if best.stop_after(epoch + 1, score, metrics, head.state_dict):
            break
    head.load_state_dict(best.state)
    head.eval()
    return head, best.result(history)


def fit_branch_head(
    lm_model: Any,
    train_states: TokenStates,
    train_y: torch.Tensor,
    dev: dict[str, tuple[TokenStates, np.ndarray]],
    options: TrainOptions,
    *,
    progress: bool = True,
    row_weights: torch.Tensor | None = None,
) -> tuple[EmotionHead, dict[str, Any]]:
    """The head with an LM branch: adapters and head trained together on cached token states (class-weighted,
    one-cycle schedule, batches of similar length), evaluated on the dev sets each epoch; returns the best.
    ``row_weights`` (one per training row) replace the class weights computed over all rows. With
    ``options.average_last`` >= 2, the means of the weights of the last 2..n epochs run are candidates too (weight
    averaging as in SWA: the one-cycle schedule's last epochs wander around one minimum, and their mean often sits
    nearer its centre)."""
    from tqdm import tqdm

    set_seeds(options.seed)
    hidden = int(train_states.states.shape[1])
    in_dim = 2 * hidden if options.pooling in ("mean+last", "attn+last") else hidden
    head = EmotionHead(
        in_dim,
        len(LABELS),
        pooling=options.pooling,
        layer=options.layer,
        hidden_units=options.hidden_units,
        branch_layers=options.branch_layers,
        lora_rank=options.lora_rank,
        lora_alpha=options.lora_alpha,
    ).bind(lm_model)
    device = next(lm_model.parameters()).device  # the branch sits beside the LM's layers: the head goes there too
    head.to(device)
    if row_weights is None:
        row_weights = balanced_weights(train_y)[train_y]
    train_y, row_weights = train_y.to(device), row_weights.to(device)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="none")
    trainable = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in trainable if n.startswith("branch.")], "lr": options.lora_lr},
        {"params": [p for n, p in trainable if not n.startswith("branch.")], "lr": options.branch_head_lr},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=options.weight_decay)
    order = torch.argsort(train_states.lengths(), stable=True).tolist()
    batches = [order[i : i + options.branch_batch_size] for i in range(0, len(order), options.branch_batch_size)]
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=[g["lr"] for g in groups],
        total_steps=options.branch_epochs * len(batches),
        pct_start=0.1,
    )
    gen = torch.Generator().manual_seed(options.seed)
    best, history = BestEpoch(options.branch_patience), list[dict[str, Any]]()
    recent: list[dict[str, torch.Tensor]] = []  # the last epochs' weights, for averaging

    def dev_metrics() -> dict[str, dict[str, float]]:
        head.eval()
        return {
            name: f1_scores(gold, head_probabilities(head, states).argmax(dim=-1).numpy())
            for name, (states, gold) in dev.items()
        }

    for epoch in range(options.branch_epochs):
        head.train()
        total = 0.0
        bar = tqdm(
            torch.randperm(len(batches), generator=gen).tolist(),
            desc=f"branch epoch {epoch + 1}",
            unit="batch",
            disable=not progress,
        )
        for b in bar:
            x, lengths, spans = train_states.batch(batches[b])
            opt.zero_grad()
            rows = torch.tensor(batches[b], device=device)
            weights = row_weights[rows]
            loss = (loss_fn(head(head.pool(x, lengths, spans)), train_y[rows]) * weights).sum() / weights.sum()
            loss.backward()
            opt.step()
            schedule.step()
            total += loss.item() * len(batches[b])
        metrics = dev_metrics()
        score = dev_score(metrics)
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "dev_score": score})
        log.info("branch epoch %d: loss %.3f, dev %.3f %s", epoch + 1, total / len(order), score, _targets(metrics))
        if options.average_last >= 2:
            recent = [*recent, snapshot(head.trained_state())][-options.average_last :]
        if best.stop_after(epoch + 1, score, metrics, head.trained_state):
            break
    epochs_run = len(history)
    for n in range(2, len(recent) + 1):
        averaged = average_states(recent[-n:])
        head.load_trained_state(averaged)
        metrics = dev_metrics()
        score = dev_score(metrics)
        name = f"mean of epochs {epochs_run - n + 1}-{epochs_run}"
        history.append({"epoch": name, "dev_score": score, **_targets(metrics)})
        log.info("branch %s: dev %.3f %s", name, score, _targets(metrics))
        best.offer(name, score, metrics, averaged)
    head.load_trained_state(best.state)
    head.eval()
    return head, best.result(history)


def snapshot(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of weights that later training steps leave alone."""
    return {k: v.detach().clone() for k, v in state.items()}


def _targets(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """The figure each corpus is judged by (GoEmotions macro-F1, MELD weighted-F1), rounded for logs."""
    return {name: round(m["macro_f1" if name == "goemotions" else "weighted_f1"], 4) for name, m in metrics.items()}


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several checkpoints of the same head (floating-point tensors; others from the last)."""
    out = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(dim=0).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def balanced_weights(labels: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Per-class weights ``(n / (classes * count))^power``: 1 balances the classes, 0 leaves them as they come."""
    counts = torch.bincount(labels, minlength=len(LABELS)).float()
    return (counts.sum() / (len(LABELS) * counts.clamp(min=1))) ** power


def corpus_row_weights(
    labels: list[torch.Tensor], powers: list[float], scales: list[float] | None = None
) -> torch.Tensor:
    """One weight per row of several corpora (in order), each corpus's classes balanced on their own to ``power``,
    and each corpus's rows multiplied by its ``scales`` entry (its share of the loss; default 1)."""
    scales = scales or [1.0] * len(labels)
    return torch.cat([balanced_weights(y, p)[y] * s for y, p, s in zip(labels, powers, scales, strict=True)])


def pooled_features(states: TokenStates, batch_size: int = 256) -> torch.Tensor:
    """The ``mean|last`` features of cached token states (what :func:`cached_features` holds), without the LM."""
    out = []
    for i in range(0, len(states), batch_size):
        x, lengths, spans = states.batch(range(i, min(i + batch_size, len(states))))
        out.append(pool_states(x, lengths, spans, "mean+last"))
    return torch.cat(out)


def concat_states(a: TokenStates, b: TokenStates) -> TokenStates:
    return TokenStates(
        torch.cat([a.states, b.states]),
        torch.cat([a.offsets, b.offsets[1:] + a.offsets[-1]]),
        torch.cat([a.spans, b.spans]),
    )
