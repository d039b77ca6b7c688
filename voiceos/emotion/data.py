"""Readers for the two training corpora in ``../shared/data/emotion``.

Each reader yields :class:`Example` rows: the utterance, its label index into :data:`LABELS`, and the preceding
utterances of the same dialogue (oldest first; empty for GoEmotions, whose Reddit comments have no context).

GoEmotions multi-label rows (about 10 %): a row whose label list holds more than one emotion is ambiguous for a
single-label softmax head, so by default such rows are skipped (``multi_label="skip"``), both for training and for
the dev figures; ``multi_label="first"`` keeps them with their first-listed label instead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from voiceos.emotion.labels import LABEL_INDEX, LABELS

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "emotion"


@dataclass(frozen=True)
class Example:
    text: str
    label: int
    context: tuple[str, ...] = field(default=())  # preceding utterances of the dialogue, oldest first
    corpus: str = ""
    context_roles: tuple[str, ...] = field(default=())  # "user"/"assistant" per context utterance; () = alternating


def read_goemotions(path: str | Path, *, multi_label: str = "skip") -> list[Example]:
    """``text<TAB>label_ids<TAB>comment_id`` rows; label_ids index labels.txt (checked against :data:`LABELS`)."""
    path = Path(path)
    names = (path.parent / "labels.txt").read_text(encoding="utf-8").split()
    if tuple(names) != LABELS:
        raise ValueError(f"{path.parent}/labels.txt lists {names}, expected {list(LABELS)}")
    if multi_label not in ("skip", "first"):
        raise ValueError("multi_label must be 'skip' or 'first'")
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0].strip():
                continue
            ids = [int(i) for i in parts[1].split(",") if i.strip()]
            if not ids or (len(ids) > 1 and multi_label == "skip"):
                continue
            rows.append(Example(parts[0].strip(), ids[0], (), "goemotions"))
    return rows


def read_meld(path: str | Path, *, context_turns: int = 2, speaker_roles: bool = False) -> list[Example]:
    """MELD ``*_sent_emo.csv``: each utterance with up to ``context_turns`` preceding utterances of its dialogue.

    ``speaker_roles``: a preceding utterance of the same speaker is a "user" turn, anyone else's an "assistant" turn,
    as in the daemon's conversations (where the user's own earlier turns are "user"); without it the roles alternate.
    """
    rows: list[Example] = []
    dialogue: list[str] = []
    speakers: list[str] = []
    current = None
    with Path(path).open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            text = " ".join(rec["Utterance"].split()).replace("\u2019", "'").replace("\u2018", "'")
            text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2026", "...").replace("\u2014", "-")
            if rec["Dialogue_ID"] != current:
                current, dialogue, speakers = rec["Dialogue_ID"], [], []
            speaker = rec["Speaker"].strip()
            context = tuple(dialogue[-context_turns:]) if context_turns > 0 else ()
            roles: tuple[str, ...] = ()
            if speaker_roles and context:
                roles = tuple("user" if s == speaker else "assistant" for s in speakers[-len(context) :])
            rows.append(Example(text, LABEL_INDEX[rec["Emotion"].strip()], context, "meld", roles))
            dialogue.append(text)
            speakers.append(speaker)
    return rows


def stratified_subsample(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """``n`` examples (all when ``n`` is None or too big), each label keeping its share, in a seeded order."""
    import random

    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_label.setdefault(ex.label, []).append(i)
    chosen: list[int] = []
    for label in sorted(by_label):
        idx = by_label[label]
        k = max(1, round(n * len(idx) / len(examples)))
        chosen.extend(rng.sample(idx, min(k, len(idx))))
    chosen.sort()
    return [examples[i] for i in chosen]
