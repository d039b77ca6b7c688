"""The options of ``voiceos train`` (emotion head), apart from :mod:`voiceos.emotion.train`: the fitting code
(:mod:`voiceos.emotion.fitting`) reads them and train.py runs the fitting, so neither imports the other for them."""

from __future__ import annotations

from dataclasses import dataclass

from voiceos.emotion.classifier import DEFAULT_CHECKPOINT
from voiceos.emotion.data import DEFAULT_DATA_DIR


@dataclass(frozen=True)
class TrainOptions:
    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = str(DEFAULT_CHECKPOINT)
    cache_dir: str | None = None  # feature cache; default: the dialogue cache dir (XDG_CACHE_HOME/voiceos)
    goemotions_train: int | None = None  # subsample sizes (stratified, seeded); None = all
    meld_train: int | None = None
    goemotions_dev: int | None = None
    meld_dev: int | None = None
    context_turns: int = 2  # MELD: preceding utterances given as earlier chat turns
    meld_speaker_roles: bool = False  # MELD context: the speaker's own turns as "user", others' as "assistant"
    pooling: str = "mean+last"  # mean | last | mean+last | attn+last (with a branch: a learnt weighting of tokens)
    hidden_units: int = 0  # 0: LayerNorm + Linear; else one GELU layer of this width before the output
    branch_layers: int = 0  # > 0: copies of the LM's next layers with LoRA adapters before pooling (branch.py)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_lr: float = 5e-4  # the adapters' peak learning rate (one-cycle schedule); the head's is branch_head_lr
    branch_head_lr: float = 2e-3
    branch_epochs: int = 4  # passes over the token states (each costs ~n layers' forward + backward per token)
    branch_patience: int = 1
    branch_batch_size: int = 32
    average_last: int = 0  # branch: >= 2 also tries the mean weights of the last 2..n epochs (kept if better on dev)
    meld_class_weight_power: float | None = None  # branch: None balances the classes over both corpora together; a
    # number balances each corpus on its own, MELD's weights raised to it (0: unweighted, as weighted-F1 rewards)
    meld_weight: float = 1.0  # branch: MELD rows' weights times this (MELD's share of the loss; 2: each row twice)
    layer: int = -1  # hidden_states index the features come from (-1: the final output)
    epochs: int = 200
    patience: int = 25
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    seed: int = 0
    feature_batch_size: int = 32
    baseline: bool = True  # also train the same head on mean-pooled features (reported beside the head)
    features_only: bool = False  # cache what the frozen LM computes (e.g. on a GPU machine) and stop there
    command: str = ""  # recorded in the model card
