"""Conversations for fine-tuning the dialogue LM, in the exact form its prompts take at run time.

Each :class:`TuningExample` is the chat messages a reply is generated after (the persona system prompt with the facts
the user told so far, earlier turns, the user's turn, and the emotion note where the policy adds one) and the reply
to learn. Kinds, mixed in the shares of :data:`SHARES` by :func:`build_training_set`:

- ``chat``, ``question``, ``request``: DailyDialog replies to a remark, a question or a request (its dialogue acts),
  with the conversation so far; most are "no emotion", as most of what people say to an assistant is;
- ``empathy``: EmpatheticDialogues listener turns (any of them, not only the first), with the conversation so far;
- ``persona``, ``recall``, ``factual``: made by voiceos (:mod:`voiceos.dialogue.tuning_made`).

Gold replies from the corpora are kept for being about what the user said, and no opening dominates
(:mod:`voiceos.dialogue.tuning_corpora`). Every example is conditioned as at run time: the emotion head reads the
user's turn in its prompt (``read_emotion``, the same pass the pipeline runs) and the policy
(:func:`voiceos.emotion.policy.reply_style`) adds its note, or none, exactly as it would for that reading, neutral
included (``emotion.neutral_note``). Without ``read_emotion`` (tests) no note is added.
Persona names vary (the configured one in half the examples), so the model learns to read the name from the prompt.
Licences: EmpatheticDialogues CC BY-NC 4.0, DailyDialog CC BY-NC-SA 4.0 (both non-commercial).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from voiceos.config import Config
from voiceos.dialogue.persona import persona_prompt
from voiceos.dialogue.tuning_corpora import (
    Exchange,
    capped,
    dailydialog_exchanges,
    detokenize_dailydialog,
    empathetic_exchanges,
)
from voiceos.dialogue.tuning_made import FACTUAL, PERSONA_NAMES, persona_case, recall_turns
from voiceos.dialogue.types import Messages
from voiceos.emotion.labels import EmotionResult
from voiceos.emotion.policy import reply_style
from voiceos.memory.facts import extract_facts

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "dialogue"
EmotionReader = Callable[[Messages], EmotionResult]  # the head's reading of the last (user) turn of a prompt
__all__ = ["DEFAULT_DATA_DIR", "SHARES", "TuningExample", "build_dev_sets", "build_training_set"]
__all__ += ["detokenize_dailydialog"]

SHARES = {
    "chat": 0.2,
    "question": 0.12,
    "request": 0.08,
    "empathy": 0.28,
    "persona": 0.08,
    "recall": 0.16,
    "factual": 0.08,
}
DAILYDIALOG_ACTS = {"chat": ("inform", "commissive"), "question": ("question",), "request": ("directive",)}


@dataclass(frozen=True)
class TuningExample:
    messages: Messages  # the prompt as the pipeline builds it, up to (and with) the note after the user's turn
    reply: str
    kind: str


class _Prompts:
    """System prompts and emotion notes as the pipeline makes them, with the persona name varied."""

    def __init__(self, config: Config, rng: random.Random, read_emotion: EmotionReader | None) -> None:
        self.config, self.rng, self.read_emotion = config, rng, read_emotion

    def persona(self) -> str:
        return self.config.persona.name if self.rng.random() < 0.5 else self.rng.choice(PERSONA_NAMES)

    def system(self, name: str, facts_from: Sequence[str] = ()) -> str:
        facts = [fact for text in facts_from for fact in extract_facts(text)]
        persona = replace(self.config.persona, name=name)
        return persona_prompt(persona, self.config.dialogue.system_prompt, facts)

    def example(self, turns: Messages, said: str, reply: str, kind: str, name: str | None = None) -> TuningExample:
        """The prompt of a reply to ``said`` after ``turns``: the system prompt holds what the user told so far, and
        the note the policy adds for the head's reading of ``said`` follows it."""
        told = [m["content"] for m in turns if m["role"] == "user"] + [said]
        system = {"role": "system", "content": self.system(name or self.persona(), told)}
        messages = [system, *turns, {"role": "user", "content": said}]
        if self.read_emotion is not None:
            note = reply_style(self.read_emotion(messages), self.config.emotion).note
            if note:
                messages.append({"role": "system", "content": note})
        return TuningExample(messages, reply, kind)

    def from_exchange(self, exchange: Exchange, kind: str) -> TuningExample:
        turns = [{"role": role, "content": text} for role, text in exchange.history]
        return self.example(turns, exchange.said, exchange.reply, kind)


def persona_examples(prompts: _Prompts, n: int, chat: Sequence[Exchange]) -> list[TuningExample]:
    out = []
    for _ in range(n):
        me = prompts.persona()
        said, reply = persona_case(prompts.rng, me, chat)
        out.append(prompts.example([], said, reply, "persona", name=me))
    return out


def recall_examples(prompts: _Prompts, n: int, chat: Sequence[Exchange]) -> list[TuningExample]:
    out = []
    for _ in range(n):
        _, history, asked, answer = recall_turns(prompts.rng, chat)
        out.append(prompts.example(history, asked, answer, "recall"))
    return out


def factual_examples(prompts: _Prompts, n: int) -> list[TuningExample]:
    return [prompts.example([], q, a, "factual") for q, a in (prompts.rng.choice(FACTUAL) for _ in range(n))]


def build_training_set(
    config: Config, data_dir: Path, n: int, seed: int, read_emotion: EmotionReader | None = None
) -> list[TuningExample]:
    """``n`` examples in the shares of :data:`SHARES`, shuffled; the same ``seed`` gives the same set."""
    rng = random.Random(seed)
    prompts = _Prompts(config, rng, read_emotion)
    daily = dailydialog_exchanges(data_dir / "dailydialog" / "train.jsonl", rng)
    empathetic = empathetic_exchanges(data_dir / "empatheticdialogues" / "train.jsonl", rng)
    rng.shuffle(daily)
    rng.shuffle(empathetic)
    counts = {kind: round(n * share) for kind, share in SHARES.items()}
    examples, used = [], set()
    for kind, acts in DAILYDIALOG_ACTS.items():
        chosen = capped([e for e in daily if e.act in acts], counts[kind])
        used.update(chosen)
        examples += [prompts.from_exchange(e, kind) for e in chosen]
    examples += [prompts.from_exchange(e, "empathy") for e in capped(empathetic, counts["empathy"])]
    # the made kinds' everyday remarks: short DailyDialog exchanges not trained on as such
    fillers = [e for e in daily if e not in used and len(e.said.split()) <= 20] or daily
    examples += persona_examples(prompts, counts["persona"], fillers)
    examples += recall_examples(prompts, counts["recall"], fillers)
    examples += factual_examples(prompts, counts["factual"])
    rng.shuffle(examples)
    return examples


def build_dev_sets(
    config: Config, data_dir: Path, n: int, seed: int, read_emotion: EmotionReader | None = None
) -> dict[str, list[TuningExample]]:
    """``n`` gold replies from each corpus's dev split, conditioned as the training set is (no filter on the reply):
    ``empathetic`` the first listener reply of EmpatheticDialogues conversations (as the dev figures have always
    been), ``daily`` a reply at any point of a DailyDialog conversation, with the conversation so far. Seeded."""
    rng = random.Random(seed)
    prompts = _Prompts(config, rng, read_emotion)
    empathetic = empathetic_exchanges(data_dir / "empatheticdialogues" / "valid.jsonl", rng, first_only=True)
    daily = dailydialog_exchanges(data_dir / "dailydialog" / "validation.jsonl", rng, keep_all=True)
    rng.shuffle(empathetic)
    rng.shuffle(daily)
    return {
        "empathetic": [prompts.from_exchange(e, "empathy") for e in empathetic[:n]],
        "daily": [prompts.from_exchange(e, "chat") for e in daily[:n]],
    }
