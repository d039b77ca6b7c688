"""Where the condolence guard may act: how sure the emotion head is that a turn is neutral (or happy), on turns whose
real feeling is known, so that the guards' thresholds keep condolences for bad news and celebrations for good news.

The guard (voiceos/reply/dialogue.py) drops a condolence when the head reads the user's turn as neutral with
probability >= ``emotion.condolence_guard_neutral``, or as joy with >= ``condolence_guard_joy``. A threshold is safe
when bad news is hardly ever read that sure: this reads the head, by the same pass the pipeline runs, on the first
turns of EmpatheticDialogues dev conversations about a negative situation (bad news: the guard must not act) and on
DailyDialog dev utterances labelled "no emotion" (everyday talk: where it should be able to act), each under the
runtime persona prompt, and prints for each threshold the share of each that reaches it.

    .venv/bin/python benchmarks/guard_thresholds.py [--n 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
# EmpatheticDialogues' situations of bad news, and of good news
ED_NEGATIVE_WORDS = (
    "sad lonely devastated disappointed guilty ashamed embarrassed afraid terrified anxious apprehensive angry furious "
    "annoyed jealous disgusted"
)
ED_NEGATIVE = set(ED_NEGATIVE_WORDS.split())
ED_POSITIVE = {"joyful", "excited", "proud", "grateful", "impressed", "content", "hopeful"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="turns of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from voiceos import models
    from voiceos.config import Config
    from voiceos.dialogue.lm import DialogueLM
    from voiceos.dialogue.persona import runtime_system_prompt
    from voiceos.dialogue.train import HeadReadings
    from voiceos.dialogue.tuning_corpora import detokenize_dailydialog, read_jsonl
    from voiceos.dialogue.tuning_data import DEFAULT_DATA_DIR
    from voiceos.reply.celebration import NOT_GOOD_NEWS
    from voiceos.reply.condolence import NOT_BAD_NEWS

    config = Config()
    plan = models.plan_devices("cpu", "auto", "float32")
    lm = DialogueLM.load(dataclasses.replace(config.dialogue, block_kernel=False, lean_decode=False), plan)
    readings = HeadReadings.for_head(lm, config)
    system = runtime_system_prompt(config)
    rng = random.Random(args.seed)
    bad = [
        c["turns"][0]["text"]
        for c in read_jsonl(DEFAULT_DATA_DIR / "empatheticdialogues" / "valid.jsonl")
        if c["emotion"] in ED_NEGATIVE
    ]
    neutral = [
        detokenize_dailydialog(u)
        for d in read_jsonl(DEFAULT_DATA_DIR / "dailydialog" / "validation.jsonl")
        for u, e in zip(d["utterances"], d["emotions"], strict=False)
        if e == "no emotion"
    ]
    happy = [
        c["turns"][0]["text"]
        for c in read_jsonl(DEFAULT_DATA_DIR / "empatheticdialogues" / "valid.jsonl")
        if c["emotion"] in ED_POSITIVE
    ]
    groups = {"bad news (ED, negative)": bad, "good news (ED, positive)": happy, "everyday (DD, no emotion)": neutral}
    table = {}
    for name, texts in groups.items():
        chosen = rng.sample(texts, min(args.n, len(texts)))
        scores = [
            readings([{"role": "system", "content": system}, {"role": "user", "content": t}]).scores for t in chosen
        ]
        # what each guard compares with its threshold: the condolence guard max(neutral, joy), the celebration guard
        # max(neutral and the four unhappy feelings)
        sure = {
            "neutral": [s["neutral"] for s in scores],
            "joy": [s["joy"] for s in scores],
            "condolence_guard": [max(s[k] for k in NOT_BAD_NEWS) for s in scores],
            "celebration_guard": [max(s[k] for k in NOT_GOOD_NEWS) for s in scores],
        }
        table[name] = {
            key: {t: round(sum(v >= t for v in values) / len(values), 3) for t in THRESHOLDS}
            for key, values in sure.items()
        }
    readings.save()
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
