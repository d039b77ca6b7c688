"""The model card `voiceos train dialogue` writes beside the adapter: what it is, the data mix and its licences, the
dev figures and the exact command (from the run's ``metrics.json``)."""

from __future__ import annotations

from typing import Any


def model_card(m: dict[str, Any]) -> str:
    o = m["options"]
    stopped = " (stopped early)" if m["stopped_early"] else ""
    kinds = ", ".join(f"{k} {v}" for k, v in m["sizes"]["train_by_kind"].items())
    notes = "; ".join(f"{v} {k!r}" for k, v in sorted(m["notes"].items(), key=lambda kv: -kv[1]))
    rows = "\n".join(
        f"| {name} ({m['sizes']['dev'][name]} replies, {m['dev_best'][name]['tokens']} tokens) | "
        f"{m['dev_base'][name]['perplexity']:.2f} | {m['dev_best'][name]['perplexity']:.2f} | "
        f"{100 * m['perplexity_change'][name]:+.1f}% |"
        for name in m["sizes"]["dev"]
    )
    return f"""# voiceos dialogue adapter (LoRA) for {m["model"]}

What it is: LoRA adapters (rank {o["rank"]}, alpha {o["alpha"]}, {m["trainable_parameters"]:,} parameters) on every
projection of decoder layers {m["adapted_layers"][0]}-{m["adapted_layers"][1]} of the embedded SmolLM2-135M-Instruct,
so that replies are about what the user said, meet their feeling (and add none where there is none), stay short and
spoken, keep the persona and answer from the facts in the system prompt. Layers before {m["adapted_layers"][0]} are
untouched: the emotion head reads the base model's states.

## Data (`voiceos/dialogue/tuning_data.py`)
- DailyDialog (Li et al., 2017), train split: a reply at any point of an everyday conversation, with up to four
  earlier turns; by the user's dialogue act: a remark (`chat`), a `question` or a `request`. Mostly "no emotion".
  **Licence: CC BY-NC-SA 4.0 (non-commercial, share-alike).**
- EmpatheticDialogues (Rashkin et al., 2019), train split: any listener turn (`empathy`), with the conversation so
  far. **Licence: CC BY-NC 4.0 (non-commercial).**
- Gold replies from both are kept when they are about what the user said (they share a content word with the user's
  turns, or answer the user's question or request by the dialogue acts), call nobody by a name the conversation did
  not use, and no two-word opening starts more than 3% of a kind's replies. No list of phrases decides.
- Built by voiceos (`voiceos/dialogue/tuning_made.py`): `persona` (its own name; greeting a user who introduces
  themselves), `recall` (a fact told turns before, asked back) and short `factual` answers.
- Every prompt is the pipeline's: the persona system prompt with what the user told so far, and the emotion note the
  policy adds for what the shipped emotion head reads in that very prompt. Notes: {notes}.

Because of the two corpora, this adapter is for non-commercial use only.
Training examples: {m["sizes"]["train"]} ({kinds}); seed {o["seed"]}.

## Results (gold replies of each corpus's dev split)
| dev set | base model perplexity | with this adapter (step {m["dev_best"]["step"]}) | change |
|---|---|---|---|
{rows}

{m["steps_run"]} steps of {o["batch_size"]} examples, {m["seconds"] / 60:.0f} min{stopped}.
Probe scores (neutral remarks, empathy, openers, recall, identity, facts, length): benchmarks/README.md.

## Reproduce
```
{m["command"]}
```
Versions: {", ".join(f"{k} {v}" for k, v in m["versions"].items())}.
"""
