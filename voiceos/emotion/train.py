"""Train the emotion head on frozen dialogue-LM features (the entry behind ``voiceos train``).

    python -m voiceos.emotion.train [--out DIR] [--goemotions-train N] ...  (``--help`` lists the options)

Both corpora are read, optionally subsampled (stratified, seeded), turned into cached features by one pass of the
frozen LM each, and a head is trained with class-weighted cross entropy, evaluated on both dev sets every epoch and
stopped early when the dev score (mean of GoEmotions macro-F1 and MELD weighted-F1) stops improving. The checkpoint
directory gets the head, ``labels.json``, ``metrics.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceos.dialogue.persona import runtime_system_prompt
from voiceos.emotion.classifier import head_probabilities
from voiceos.emotion.data import Example, read_goemotions, read_meld, stratified_subsample
from voiceos.emotion.features import FeatureExtractor, TokenStates, cached_features, cached_token_states
from voiceos.emotion.fitting import (
    balanced_weights,
    concat_states,
    corpus_row_weights,
    fit_branch_head,
    fit_head,
    pooled_features,
    set_seeds,
)
from voiceos.emotion.head import EmotionHead, select
from voiceos.emotion.labels import LABELS
from voiceos.emotion.train_options import TrainOptions

log = logging.getLogger(__name__)
CHECK_ROWS = 12  # dev examples per corpus recorded with their predictions in metrics.json


def _load_sets(options: TrainOptions) -> dict[str, list[Example]]:
    data = Path(options.data_dir)
    turns, roles = options.context_turns, options.meld_speaker_roles
    sets = {
        "goemotions_train": read_goemotions(data / "goemotions_ekman" / "train.tsv"),
        "meld_train": read_meld(data / "meld" / "train_sent_emo.csv", context_turns=turns, speaker_roles=roles),
        "goemotions_dev": read_goemotions(data / "goemotions_ekman" / "dev.tsv"),
        "meld_dev": read_meld(data / "meld" / "dev_sent_emo.csv", context_turns=turns, speaker_roles=roles),
    }
    sizes = {
        "goemotions_train": options.goemotions_train,
        "meld_train": options.meld_train,
        "goemotions_dev": options.goemotions_dev,
        "meld_dev": options.meld_dev,
    }
    return {name: stratified_subsample(rows, sizes[name], options.seed) for name, rows in sets.items()}


def train(options: TrainOptions, lm: Any | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Train, write the checkpoint to ``options.out_dir`` and return its metrics."""
    from voiceos import models
    from voiceos.config import load_config

    start = time.perf_counter()
    set_seeds(options.seed)
    if lm is None:
        from voiceos.dialogue.lm import DialogueLM

        config = load_config()
        plan = models.plan_for(config)
        lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads)
        lm = lm.with_options(system_prompt=runtime_system_prompt(config))  # the states the head sees at run time
    cache_dir = Path(options.cache_dir) if options.cache_dir else models.cache_dir(lm.options.cache_dir)
    sets = _load_sets(options)
    extractor = FeatureExtractor(lm, options.layer)
    feats: dict[str, torch.Tensor] = {}
    states: dict[str, TokenStates] = {}
    for name, rows in sets.items():
        log.info("%s: %d examples", name, len(rows))
        size = options.feature_batch_size
        if options.branch_layers:  # the pooled features (for the baseline) come from the same token states
            states[name] = cached_token_states(extractor, rows, cache_dir, tag=name, batch_size=size, progress=progress)
            feats[name] = pooled_features(states[name])
        else:
            found = cached_features(extractor, rows, cache_dir, tag=name, batch_size=size, progress=progress)
            feats[name] = torch.from_numpy(found)
    if options.features_only:
        return {"sizes": {name: len(rows) for name, rows in sets.items()}, "cache_dir": str(cache_dir)}
    labels = {name: np.array([ex.label for ex in rows]) for name, rows in sets.items()}
    hidden = int(lm.model.config.hidden_size)

    def run(pooling: str) -> tuple[EmotionHead, dict[str, Any]]:
        train_x = select(torch.cat([feats["goemotions_train"], feats["meld_train"]]), pooling, hidden)
        train_y = torch.from_numpy(np.concatenate([labels["goemotions_train"], labels["meld_train"]])).long()
        dev = {
            "goemotions": (select(feats["goemotions_dev"], pooling, hidden), labels["goemotions_dev"]),
            "meld": (select(feats["meld_dev"], pooling, hidden), labels["meld_dev"]),
        }
        return fit_head(train_x, train_y, dev, options, pooling, progress=progress)

    if options.branch_layers:
        train_states = concat_states(states["goemotions_train"], states["meld_train"])
        train_y = torch.from_numpy(np.concatenate([labels["goemotions_train"], labels["meld_train"]])).long()
        dev_states = {
            "goemotions": (states["goemotions_dev"], labels["goemotions_dev"]),
            "meld": (states["meld_dev"], labels["meld_dev"]),
        }
        row_weights = None  # classes balanced over both corpora together
        if options.meld_class_weight_power is not None:
            by_corpus = [torch.from_numpy(labels[name]).long() for name in ("goemotions_train", "meld_train")]
            powers, scales = [1.0, options.meld_class_weight_power], [1.0, options.meld_weight]
            row_weights = corpus_row_weights(by_corpus, powers, scales)
        elif options.meld_weight != 1.0:
            row_weights = balanced_weights(train_y)[train_y]
            row_weights[len(labels["goemotions_train"]) :] *= options.meld_weight
        head, result = fit_branch_head(
            lm.model, train_states, train_y, dev_states, options, progress=progress, row_weights=row_weights
        )
    else:
        head, result = run(options.pooling)
    metrics: dict[str, Any] = {
        "labels": list(LABELS),
        "model": lm.name,
        "pooling": options.pooling,
        "layer": options.layer,
        "dev": {"goemotions": result["goemotions"], "meld": result["meld"]},
        "targets": {"goemotions_macro_f1": 0.58, "meld_weighted_f1": 0.58},
        "best_epoch": result["epoch"],
        "epochs_run": result["epochs_run"],
        "history": result["history"],
        "sizes": {name: len(rows) for name, rows in sets.items()},
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k not in ("out_dir", "cache_dir")},
    }
    if options.baseline and (options.pooling != "mean" or options.branch_layers):
        _, base = run("mean")
        metrics["baseline"] = {
            "pooling": "mean",
            "dev": {"goemotions": base["goemotions"], "meld": base["meld"]},
            "best_epoch": base["epoch"],
        }
    metrics["check"] = _check_rows(head, sets, feats, states, hidden)
    metrics["train_s"] = round(time.perf_counter() - start, 1)
    out = Path(options.out_dir)
    head.save(out)
    (out / "labels.json").write_text(json.dumps(list(LABELS)) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(_model_card(metrics, options), encoding="utf-8")
    return metrics


def _check_rows(
    head: EmotionHead,
    sets: dict[str, list[Example]],
    feats: dict[str, torch.Tensor],
    states: dict[str, TokenStates],
    hidden: int,
) -> list[dict[str, Any]]:
    """The first dev examples of each corpus with the head's predictions, for tests to recompute and compare."""
    rows = []
    for name in ("goemotions_dev", "meld_dev"):
        n = min(CHECK_ROWS, len(sets[name]))
        if head.branch_layers:
            pred = head_probabilities(head, states[name]).argmax(dim=-1)[:n].tolist()
        else:
            with torch.no_grad():
                pred = head(select(feats[name][:n], head.pooling, hidden)).argmax(dim=-1).tolist()
        for ex, p in zip(sets[name][:n], pred, strict=True):
            rows.append(
                {
                    "corpus": ex.corpus,
                    "text": ex.text,
                    "context": list(ex.context),
                    "label": LABELS[ex.label],
                    "pred": LABELS[p],
                }
            )
    return rows


def _model_card(metrics: dict[str, Any], options: TrainOptions) -> str:
    dev, sizes, pooling = metrics["dev"], metrics["sizes"], metrics["pooling"]
    units = options.hidden_units
    head_kind = f"LayerNorm + Linear({units}) + GELU + Linear" if units else "LayerNorm + Linear"
    k = options.branch_layers
    lines = [
        "# voiceos emotion head",
        "",
        f"{head_kind} over the frozen dialogue LM's ({metrics['model']}) hidden states (hidden_states index",
        f"{metrics['layer']}) of the user's turn, pooled as `{pooling}` ({POOLING_WORDS[pooling]}),",
        "computed from the same chat prompt the dialogue prefills (system prompt + history + user turn), so a",
        "reply's own prefill yields the emotion.",
        f"Labels: {', '.join(metrics['labels'])}.",
        "",
    ]
    if k:
        lines += [
            f"Before pooling, the states go through a branch: copies of the LM's decoder layers {metrics['layer']}.."
            f"{metrics['layer'] + k - 1} (0-based)",
            f"with LoRA adapters (rank {options.lora_rank}, alpha {options.lora_alpha:g}) on q/k/v/o/gate/up/down, "
            "trained with the head. The checkpoint holds only the adapters and the head; the",
            "frozen weights are the LM's own, so it fits this LM only. The reply's own layers are not adapted.",
            "",
        ]
    lines += [
        "## Data (../shared/data/emotion)",
        "- GoEmotions-Ekman (Reddit comments; CC BY 4.0); multi-label rows skipped; no context.",
        f"- MELD (Friends; GPL-3.0), with the {options.context_turns} preceding utterances as earlier chat turns"
        + (" (the speaker's own as user turns, others' as assistant turns)." if options.meld_speaker_roles else "."),
        f"- Sizes used (stratified seeded subsamples where smaller than the corpus): {json.dumps(sizes)}",
        "",
        "## Dev figures",
        f"- GoEmotions-Ekman macro-F1 {dev['goemotions']['macro_f1']:.3f} (target 0.58)",
        f"- MELD weighted-F1 {dev['meld']['weighted_f1']:.3f} (target 0.58)",
    ]
    if "baseline" in metrics:
        b = metrics["baseline"]["dev"]
        lines.append(
            f"- baseline ({'linear head, no branch' if k else 'same head'}, mean-pooled only): "
            f"GoEmotions macro-F1 {b['goemotions']['macro_f1']:.3f}, "
            f"MELD weighted-F1 {b['meld']['weighted_f1']:.3f}"
        )
    lines += ["", "## Rebuild", "", "```sh", options.command or "python -m voiceos.emotion.train", "```", ""]
    return "\n".join(lines)


POOLING_WORDS = {
    "mean": "the mean over the user's tokens",
    "last": "the state of the turn's last token",
    "mean+last": "the mean over the user's tokens, and the turn's last token",
    "attn+last": "a learnt attention-weighted mean over the user's tokens, and the turn's last token",
}
LOCAL_PATH_OPTIONS = ("--out-dir", "--cache-dir")  # where this machine keeps things: not part of the recipe


def recorded_arguments(argv: list[str]) -> list[str]:
    """The arguments as the model card records them: without the local output and cache paths (the options that
    metrics.json records leave them out too)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LOCAL_PATH_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in LOCAL_PATH_OPTIONS)):
            kept.append(arg)
    return kept


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m voiceos.emotion.train", description=__doc__.splitlines()[0])
    defaults = TrainOptions()
    for f in dataclasses.fields(TrainOptions):
        if f.name == "command":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.name in ("goemotions_train", "meld_train", "goemotions_dev", "meld_dev"):
            parser.add_argument(flag, type=int, default=default)
        elif f.name == "meld_class_weight_power":
            parser.add_argument(flag, type=float, default=default)
        else:
            parser.add_argument(flag, type=type(default) if default is not None else str, default=default)
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "voiceos.emotion.train", *recorded_arguments(argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metrics = train(TrainOptions(**vars(args), command=command))
    print(json.dumps({k: metrics[k] for k in ("dev", "baseline", "sizes") if k in metrics}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
