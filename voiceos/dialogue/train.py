"""Fine-tune the dialogue LM with LoRA (peft): the entry behind ``voiceos train dialogue``.

    voiceos train dialogue [--out DIR] [--examples N] [--max-steps N] ...  (``--help`` lists the options)

The training set (:mod:`voiceos.dialogue.tuning_data`) is built in the prompts' run-time form and seeded, each
example conditioned on what the emotion head reads in it (:class:`HeadReadings`); the loss is the cross entropy of
the reply's tokens only (the prompt is context). LoRA adapters go on every projection of the layers from the emotion
head's reading point on (so the head's input stays the base model's). Every ``eval_every`` steps, and before the
first, the dev loss and perplexity of gold replies are measured on two dev sets, EmpatheticDialogues' first listener
replies and DailyDialog's replies (the first evaluation is the base model's); training stops early when their mean
loss has not improved for ``patience`` evaluations, and the best adapter is kept. The checkpoint directory gets
peft's adapter files (float16), ``metrics.json`` and ``MODEL_CARD.md``. ``--score-adapter DIR`` scores an adapter
(and the base model) on the same dev sets without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voiceos.config import Config
from voiceos.dialogue.adapter import EMBEDDED_ADAPTER
from voiceos.dialogue.train_card import model_card
from voiceos.dialogue.tuning_data import (
    DEFAULT_DATA_DIR,
    SHARES,
    Messages,
    TuningExample,
    build_dev_sets,
    build_training_set,
)
from voiceos.emotion.labels import EmotionResult

log = logging.getLogger(__name__)
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class DialogueTrainOptions:
    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = str(EMBEDDED_ADAPTER)
    examples: int = 2400  # training set size (shares: tuning_data.SHARES)
    dev_examples: int = 300  # dev replies of each corpus scored for loss and perplexity
    max_steps: int = 160
    batch_size: int = 8
    lr: float = 4e-4  # peak; linear warm-up over warmup_steps, then cosine decay to max_steps
    warmup_steps: int = 10
    weight_decay: float = 0.0
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    first_layer: int = -1  # the first decoder layer adapted; -1: the emotion head's reading layer
    max_tokens: int = 256  # longer examples are dropped
    eval_every: int = 40
    patience: int = 2
    seed: int = 0
    threads: int = 0  # 0: torch's default
    score_adapter: str = ""  # an adapter directory: score it and the base model on the dev sets, no training


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceos train dialogue", description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(DialogueTrainOptions):
        flag = "--" + field.name.replace("_", "-")
        kind = type(field.default) if field.default is not None else str
        parser.add_argument(flag, type=kind, default=field.default, help=f"default: {field.default}")
    return parser


def _head_layer(config: Config) -> int:
    """The hidden-state index the shipped emotion head reads (its branch starts at that layer)."""
    from voiceos.emotion.classifier import load_head

    head, _ = load_head(config.emotion.checkpoint)
    return int(head.layer)


class HeadReadings:
    """What the emotion head reads in a prompt's last (user) turn, by the same pass the pipeline runs
    (``DialogueLM.emotion_of``), kept on disk by prompt (one file per head): building a set again reads nothing
    twice."""

    def __init__(self, lm: Any, path: Path) -> None:
        self.lm, self.path = lm, path
        self.saved: dict[str, dict[str, float]] = {}
        if path.is_file():
            self.saved = json.loads(path.read_text(encoding="utf-8"))
        self.fresh = 0

    @classmethod
    def for_head(cls, lm: Any, config: Config) -> HeadReadings:
        from voiceos import models
        from voiceos.emotion.classifier import DEFAULT_CHECKPOINT, load_head

        head, labels = load_head(config.emotion.checkpoint)
        lm.attach_emotion_head(head, labels)
        directory = Path(config.emotion.checkpoint or DEFAULT_CHECKPOINT).expanduser()
        digest = hashlib.sha256(lm.name.encode())
        for name in ("head.json", "head.safetensors", "labels.json"):
            digest.update((directory / name).read_bytes())
        path = models.cache_dir(config.dialogue.cache_dir) / "tuning-emotions" / f"{digest.hexdigest()[:16]}.json"
        return cls(lm, path)

    def __call__(self, messages: Messages) -> EmotionResult:
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:24]
        if key not in self.saved:
            self.saved[key] = self.lm.emotion_of(messages).scores
            self.fresh += 1
            if self.fresh % 250 == 0:
                log.info("the emotion head has read %d new training prompts", self.fresh)
        scores = self.saved[key]
        return EmotionResult(max(scores, key=scores.__getitem__), scores)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.saved), encoding="utf-8")


class _Batches:
    """Token ids and reply masks of examples, in the chat template's own form."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def encode(self, example: TuningExample) -> tuple[list[int], int] | None:
        prompt = self.tokenizer.apply_chat_template(example.messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = self.tokenizer(example.reply, add_special_tokens=False)["input_ids"] + [self.end]
        ids = prompt_ids + reply_ids
        return (ids, len(prompt_ids)) if len(ids) <= self.max_tokens else None

    @staticmethod
    def collate(rows: list[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, attention mask, target mask), right-padded; a target is the token at that position."""
        width = max(len(ids) for ids, _ in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        attention = torch.zeros(len(rows), width, dtype=torch.long)
        target = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, (row, start) in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            target[i, start : len(row)] = True
        return ids, attention, target


def reply_loss(
    model: Any, ids: torch.Tensor, attention: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Summed cross entropy of the target tokens and their count; the output matrix runs only where it is needed
    (a reply's tokens, ~1/6 of a row: the 49k-word output matrix over every prompt token was most of a step)."""
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.model(input_ids=ids, attention_mask=attention).last_hidden_state  # (b, t, d)
    predicts = target[:, 1:]  # position t-1 predicts token t
    logits = causal.lm_head(hidden[:, :-1][predicts]).float()
    labels = ids[:, 1:][predicts]
    return torch.nn.functional.cross_entropy(logits, labels, reduction="sum"), int(labels.numel())


def evaluate(model: Any, rows: list[tuple[list[int], int]], batch_size: int) -> dict[str, float]:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            loss, n = reply_loss(model, *_Batches.collate(rows[i : i + batch_size]))
            total, count = total + float(loss), count + n
    model.train()
    mean = total / max(count, 1)
    return {"loss": mean, "perplexity": math.exp(mean), "tokens": count}


def evaluate_dev(model: Any, dev: dict[str, list[tuple[list[int], int]]], batch_size: int) -> dict[str, Any]:
    """Each dev set's loss and perplexity, and ``loss``: their mean (what picks the best adapter)."""
    result: dict[str, Any] = {name: evaluate(model, rows, batch_size) for name, rows in dev.items()}
    result["loss"] = sum(r["loss"] for r in result.values()) / len(dev)
    return result


def _dev_line(result: dict[str, Any]) -> str:
    return ", ".join(f"{name} {r['perplexity']:.2f}" for name, r in result.items() if isinstance(r, dict))


def train(options: DialogueTrainOptions, config: Config, command: str) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    from voiceos import models
    from voiceos.dialogue.lm import DialogueLM

    started = time.time()
    random.seed(options.seed)
    torch.manual_seed(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    plan = models.plan_devices(config.runtime.device, config.asr.compute_type, "float32")
    dialogue = dataclasses.replace(config.dialogue, adapter=None, block_kernel=False, lean_decode=False)
    lm = DialogueLM.load(dialogue, plan)
    model, tokenizer = lm.model, lm.tokenizer
    n_layers = len(model.model.layers)
    first = options.first_layer if options.first_layer >= 0 else _head_layer(config)
    if not 0 <= first < n_layers:
        raise SystemExit(f"voiceos train dialogue: --first-layer must be in [0, {n_layers - 1}], got {first}")

    encoder = _Batches(tokenizer, options.max_tokens)
    readings = HeadReadings.for_head(lm, config)
    train_set = build_training_set(config, Path(options.data_dir), options.examples, options.seed, readings)
    dev_rows = _dev_rows(options, config, encoder, readings)
    train_rows = [(row, ex.kind) for ex in train_set if (row := encoder.encode(ex)) is not None]
    kinds: dict[str, int] = {}
    for _, kind in train_rows:
        kinds[kind] = kinds.get(kind, 0) + 1
    noted = _notes(train_set)
    log.info("training on %d examples %s (notes %s), dev %s", len(train_rows), kinds, noted, _sizes(dev_rows))

    lora = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,  # type: ignore[arg-type]  # peft says int; it only divides it by r: 16.0 works
        lora_dropout=options.dropout,
        target_modules=PROJECTIONS,
        layers_to_transform=list(range(first, n_layers)),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=options.weight_decay)

    def lr_at(step: int) -> float:
        if step < options.warmup_steps:
            return (step + 1) / options.warmup_steps
        progress = (step - options.warmup_steps) / max(1, options.max_steps - options.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    order = random.Random(options.seed)
    evaluations = [{"step": 0, **evaluate_dev(model, dev_rows, options.batch_size)}]
    log.info("dev perplexity before training (the base model): %s", _dev_line(evaluations[0]))
    best = dict(evaluations[0], state=_adapter_state(model))  # at step 0 (B = 0): the base model itself
    history: list[float] = []  # the training loss per step
    queue: list[Any] = []  # the rows of train_rows still to be drawn
    since_best, step = 0, 0
    bar = tqdm(total=options.max_steps, desc="fine-tuning the dialogue LM", unit="step")
    while step < options.max_steps and since_best < options.patience:
        if len(queue) < options.batch_size:
            queue += order.sample(train_rows, len(train_rows))  # one more shuffled pass (an epoch)
        batch, queue = queue[: options.batch_size], queue[options.batch_size :]
        loss_sum, n = reply_loss(model, *_Batches.collate([row for row, _ in batch]))
        loss = loss_sum / max(n, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        history.append(round(loss.item(), 4))
        bar.update()
        bar.set_postfix(loss=f"{history[-1]:.3f}", dev=f"{best['loss']:.3f}")
        if step % options.eval_every == 0 or step == options.max_steps:
            result = {"step": step, **evaluate_dev(model, dev_rows, options.batch_size)}
            evaluations.append(result)
            log.info("step %d: dev perplexity %s", step, _dev_line(result))
            if result["loss"] < best["loss"]:
                best, since_best = dict(result, state=_adapter_state(model)), 0
            else:
                since_best += 1
    bar.close()
    if best["step"] == 0:
        log.warning("no step improved the dev loss: the saved adapter is the untrained one (the base model's replies)")
    model.load_state_dict(best["state"], strict=False)
    out = Path(options.out_dir)
    _save_adapter(model, out)
    base = evaluations[0]
    metrics = {
        "model": lm.name,
        "command": command,
        "options": dataclasses.asdict(options),
        "adapted_layers": [first, n_layers - 1],
        "trainable_parameters": sum(p.numel() for p in trainable),
        "sizes": {"train": len(train_rows), "train_by_kind": kinds, "dev": _sizes(dev_rows)},
        "shares": SHARES,
        "notes": noted,
        "dev_base": {k: v for k, v in base.items() if k != "step"},
        "dev_best": {k: v for k, v in best.items() if k != "state"},
        "perplexity_change": {name: best[name]["perplexity"] / base[name]["perplexity"] - 1 for name in dev_rows},
        "evaluations": evaluations,
        "train_loss": history,
        "steps_run": step,
        "stopped_early": step < options.max_steps,
        "seconds": round(time.time() - started, 1),
        "versions": _versions(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(model_card(metrics), encoding="utf-8")
    return metrics


def _dev_rows(
    options: DialogueTrainOptions, config: Config, encoder: _Batches, readings: HeadReadings
) -> dict[str, list[tuple[list[int], int]]]:
    dev_sets = build_dev_sets(config, Path(options.data_dir), options.dev_examples, options.seed, readings)
    readings.save()
    return {name: [row for ex in dev if (row := encoder.encode(ex)) is not None] for name, dev in dev_sets.items()}


def _notes(examples: list[TuningExample]) -> dict[str, int]:
    """How many examples carry each emotion note (by the feeling it names), and how many none."""
    counts: dict[str, int] = {}
    for example in examples:
        last = example.messages[-1]
        key = last["content"] if last["role"] == "system" else "(none)"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _sizes(dev_rows: dict[str, list[Any]]) -> dict[str, int]:
    return {name: len(rows) for name, rows in dev_rows.items()}


def score_adapter(options: DialogueTrainOptions, config: Config) -> dict[str, Any]:
    """The dev sets' loss and perplexity with the adapter in ``options.score_adapter`` and without it (the base
    model), built as :func:`train` builds them."""
    from voiceos import models
    from voiceos.dialogue.adapter import set_adapter_enabled
    from voiceos.dialogue.lm import DialogueLM

    plan = models.plan_devices(config.runtime.device, config.asr.compute_type, "float32")
    adapter = str(Path(options.score_adapter).expanduser())
    lm = DialogueLM.load(
        dataclasses.replace(config.dialogue, adapter=adapter, block_kernel=False, lean_decode=False), plan
    )
    if lm.adapter is None:
        raise SystemExit(f"voiceos train dialogue: {adapter} is not an adapter of {lm.name}")
    readings = HeadReadings.for_head(lm, config)
    dev_rows = _dev_rows(options, config, _Batches(lm.tokenizer, options.max_tokens), readings)
    scores = {"adapter": evaluate_dev(lm.model, dev_rows, options.batch_size)}
    set_adapter_enabled(lm.model, False)
    scores["base"] = evaluate_dev(lm.model, dev_rows, options.batch_size)
    return {"adapter_dir": adapter, "dev": _sizes(dev_rows), **scores}


def _adapter_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def _save_adapter(model: Any, out: Path) -> None:
    """peft's files, the weights in float16 (half the size; the loader computes in the model's dtype)."""
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    weights = out / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(str(weights)).items()}, str(weights))
    weights.chmod(0o644)
    (out / "README.md").unlink(missing_ok=True)  # peft's card template; MODEL_CARD.md is the card


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


def main(argv: list[str] | None = None, config: Config | None = None) -> int:
    args = _parser().parse_args(argv)
    options = DialogueTrainOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DialogueTrainOptions)})
    if not Path(options.data_dir, "empatheticdialogues", "train.jsonl").is_file():
        print(f"voiceos train dialogue: no EmpatheticDialogues under {options.data_dir}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if options.score_adapter:
        print(json.dumps(score_adapter(options, config or Config()), indent=2))
        return 0
    command = "voiceos train dialogue " + shlex.join(argv if argv is not None else sys.argv[1:])
    metrics = train(options, config or Config(), command.strip())
    print(json.dumps({k: metrics[k] for k in ("dev_base", "dev_best", "perplexity_change", "steps_run")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
