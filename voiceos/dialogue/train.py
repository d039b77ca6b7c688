"""Fine-tune the dialogue LM with LoRA (peft): the entry behind ``voiceos train dialogue``.

    voiceos train dialogue [--out DIR] [--examples N] [--max-steps N] ...  (``--help`` lists the options)

The training set (:mod:`voiceos.dialogue.tuning_data`) is built in the prompts' run-time form and seeded; the loss
is the cross entropy of the reply's tokens only (the prompt is context). LoRA adapters go on every projection of the
layers from the emotion head's reading point on (so the head's input stays the base model's). Every ``eval_every``
steps, and before the first, the dev loss and perplexity of EmpatheticDialogues' gold listener replies are measured
(the first is the base model's); training stops early when it has not improved for ``patience`` evaluations, and the
best adapter is kept. The checkpoint directory gets peft's adapter files (float16), ``metrics.json`` and
``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from voiceos.dialogue.tuning_data import DEFAULT_DATA_DIR, TuningExample, build_dev_set, build_training_set

log = logging.getLogger(__name__)
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class DialogueTrainOptions:
    data_dir: str = str(DEFAULT_DATA_DIR)
    out_dir: str = str(EMBEDDED_ADAPTER)
    examples: int = 2000  # training set size (shares: tuning_data.SHARES)
    dev_examples: int = 300  # EmpatheticDialogues dev replies scored for loss and perplexity
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

    data_dir = Path(options.data_dir)
    encoder = _Batches(tokenizer, options.max_tokens)
    train_set = build_training_set(config, data_dir, options.examples, options.seed)
    dev_set = build_dev_set(config, data_dir, options.dev_examples, options.seed)
    train_rows = [(row, ex.kind) for ex in train_set if (row := encoder.encode(ex)) is not None]
    dev_rows = [row for ex in dev_set if (row := encoder.encode(ex)) is not None]
    kinds: dict[str, int] = {}
    for _, kind in train_rows:
        kinds[kind] = kinds.get(kind, 0) + 1
    log.info("training on %d examples %s, scoring %d dev replies", len(train_rows), kinds, len(dev_rows))

    lora = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
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
    evaluations = [{"step": 0, **evaluate(model, dev_rows, options.batch_size)}]
    log.info(
        "dev before training (the base model): loss %.3f, perplexity %.2f",
        evaluations[0]["loss"],
        evaluations[0]["perplexity"],
    )
    best = dict(evaluations[0], state=_adapter_state(model))  # at step 0 (B = 0): the base model itself
    history, queue, since_best, step = [], [], 0, 0
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
            result = {"step": step, **evaluate(model, dev_rows, options.batch_size)}
            evaluations.append(result)
            log.info("step %d: dev loss %.3f, perplexity %.2f", step, result["loss"], result["perplexity"])
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
        "sizes": {"train": len(train_rows), "train_by_kind": kinds, "dev": len(dev_rows)},
        "dev_base": {k: base[k] for k in ("loss", "perplexity", "tokens")},
        "dev_best": {k: best[k] for k in ("step", "loss", "perplexity", "tokens")},
        "perplexity_change": best["perplexity"] / base["perplexity"] - 1,
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


def model_card(m: dict[str, Any]) -> str:
    o = m["options"]
    kinds = ", ".join(f"{k} {v}" for k, v in m["sizes"]["train_by_kind"].items())
    return f"""# voiceos dialogue adapter (LoRA) for {m["model"]}

What it is: LoRA adapters (rank {o["rank"]}, alpha {o["alpha"]}, {m["trainable_parameters"]:,} parameters) on every
projection of decoder layers {m["adapted_layers"][0]}-{m["adapted_layers"][1]} of the embedded SmolLM2-135M-Instruct,
so that replies meet the user's feeling, stay short and spoken, keep the persona and answer from the facts in the
system prompt. Layers before {m["adapted_layers"][0]} are untouched: the emotion head reads the base model's states.

## Data
- EmpatheticDialogues (Rashkin et al., 2019), train split: a speaker's opening and the listener's first reply,
  kept where the reply meets the feeling. **Licence: CC BY-NC 4.0 (non-commercial).**
- DailyDialog (Li et al., 2017), train split: an utterance and its reply. **Licence: CC BY-NC-SA 4.0
  (non-commercial, share-alike).**
- Built by voiceos (`voiceos/dialogue/tuning_data.py`): persona, memory-recall and short factual examples.

Because of the two corpora, this adapter is for non-commercial use only.
Training examples: {m["sizes"]["train"]} ({kinds}); seed {o["seed"]}.

## Results (EmpatheticDialogues dev, {m["sizes"]["dev"]} gold listener replies, {m["dev_best"]["tokens"]} tokens)
| | loss | perplexity |
|---|---|---|
| base model | {m["dev_base"]["loss"]:.3f} | {m["dev_base"]["perplexity"]:.2f} |
| with this adapter (step {m["dev_best"]["step"]}) | {m["dev_best"]["loss"]:.3f} | {m["dev_best"]["perplexity"]:.2f} |

Perplexity change: {100 * m["perplexity_change"]:+.1f}%. {m["steps_run"]} steps of {o["batch_size"]} examples,
{m["seconds"] / 60:.0f} min{" (stopped early)" if m["stopped_early"] else ""}. Probe scores: benchmarks/README.md.

## Reproduce
```
{m["command"]}
```
Versions: {", ".join(f"{k} {v}" for k, v in m["versions"].items())}.
"""


def main(argv: list[str] | None = None, config: Config | None = None) -> int:
    args = _parser().parse_args(argv)
    options = DialogueTrainOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DialogueTrainOptions)})
    if not Path(options.data_dir, "empatheticdialogues", "train.jsonl").is_file():
        print(f"voiceos train dialogue: no EmpatheticDialogues under {options.data_dir}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    command = "voiceos train dialogue " + shlex.join(argv if argv is not None else sys.argv[1:])
    metrics = train(options, config or Config(), command.strip())
    print(json.dumps({k: metrics[k] for k in ("dev_base", "dev_best", "perplexity_change", "steps_run")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
