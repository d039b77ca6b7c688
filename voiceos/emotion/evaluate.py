"""Score an emotion head checkpoint on the corpora's dev sets (all rows by default), without training anything.

Training picks its epoch on a dev subset; this scores the shipped head (or any ``--checkpoint``) on every dev row,
so the figures include rows that played no part in choosing it. Features come from the same cache as training.

    python -m voiceos.emotion.evaluate                 # the shipped head, all GoEmotions-Ekman and MELD dev rows
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceos.dialogue.persona import runtime_system_prompt
from voiceos.emotion.classifier import DEFAULT_CHECKPOINT, head_probabilities
from voiceos.emotion.data import DEFAULT_DATA_DIR, read_goemotions, read_meld, stratified_subsample
from voiceos.emotion.features import FeatureExtractor, cached_features, cached_token_states
from voiceos.emotion.fitting import evaluate, f1_scores
from voiceos.emotion.head import EmotionHead, select

log = logging.getLogger(__name__)


def dev_sets(
    data_dir: Path,
    *,
    goemotions: int | None,
    meld: int | None,
    context_turns: int = 2,
    speaker_roles: bool = False,
    seed: int = 0,
):
    """The dev rows of both corpora (a stratified, seeded subsample when a size is given)."""
    meld_rows = read_meld(
        data_dir / "meld" / "dev_sent_emo.csv", context_turns=context_turns, speaker_roles=speaker_roles
    )
    return {
        "goemotions_dev": stratified_subsample(
            read_goemotions(data_dir / "goemotions_ekman" / "dev.tsv"), goemotions, seed
        ),
        "meld_dev": stratified_subsample(meld_rows, meld, seed),
    }


def trained_meld_context(checkpoint: Path) -> dict[str, Any]:
    """How the head saw MELD's context in training (its metrics.json): ``context_turns`` preceding utterances (2 if
    it does not say) and whether their roles followed the speakers (``speaker_roles``)."""
    metrics = Path(checkpoint) / "metrics.json"
    options = json.loads(metrics.read_text(encoding="utf-8")).get("options", {}) if metrics.is_file() else {}
    return {
        "context_turns": int(options.get("context_turns", 2)),
        "speaker_roles": bool(options.get("meld_speaker_roles", False)),
    }


def evaluate_checkpoint(
    lm: Any,
    checkpoint: Path = DEFAULT_CHECKPOINT,
    *,
    data_dir: Path = DEFAULT_DATA_DIR,
    goemotions: int | None = None,
    meld: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """GoEmotions-Ekman and MELD dev scores of the head in ``checkpoint`` on ``lm``'s features."""
    from voiceos import models

    head = EmotionHead.load(checkpoint).bind(lm.model)
    cache = cache_dir or models.cache_dir(lm.options.cache_dir)
    extractor = FeatureExtractor(lm, head.layer)
    hidden = int(lm.model.config.hidden_size)
    context = trained_meld_context(checkpoint)
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "model": lm.name, "layer": head.layer}
    for name, rows in dev_sets(Path(data_dir), goemotions=goemotions, meld=meld, **context).items():
        gold = np.array([ex.label for ex in rows])
        if head.branch_layers:  # the branch reads every token's state
            states = cached_token_states(extractor, rows, cache, tag=name, progress=progress)
            result[name.removesuffix("_dev")] = f1_scores(gold, head_probabilities(head, states).argmax(-1).numpy())
        else:
            feats = torch.from_numpy(cached_features(extractor, rows, cache, tag=name, progress=progress))
            result[name.removesuffix("_dev")] = evaluate(head, select(feats, head.pooling, hidden), gold)
    result["targets"] = {"goemotions_macro_f1": 0.58, "meld_weighted_f1": 0.58}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceos.emotion.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="head directory (default: shipped)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--goemotions-dev", type=int, default=None, help="subsample size (default: all rows)")
    parser.add_argument("--meld-dev", type=int, default=None, help="subsample size (default: all rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from voiceos import models
    from voiceos.config import load_config
    from voiceos.dialogue.lm import DialogueLM

    config = load_config()
    plan = models.plan_for(config)
    lm = DialogueLM.load(config.dialogue, plan, threads=config.runtime.threads)
    lm = lm.with_options(system_prompt=runtime_system_prompt(config))  # the states the head sees at run time
    result = evaluate_checkpoint(
        lm, args.checkpoint, data_dir=args.data_dir, goemotions=args.goemotions_dev, meld=args.meld_dev
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
