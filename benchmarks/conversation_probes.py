"""Scripted conversations through `voiceos chat --jsonl`, scored for what a user judges first in the replies.

Each probe is a short conversation (a new one each: `{"reset": true}` first) whose last reply is scored:

- empathy: bad news is acknowledged (sympathy) and not celebrated; good news gets warmth and no condolence;
- recall: "what is my name / what is my dog called" a turn or two after the user said it comes back right;
- identity: asked its own name, it gives the persona's (and not the user's);
- factual: simple questions stay right.

Every reply of every probe counts for length: median words, and replies over 40 words (none of these probes asks for
detail). Scoring is by word lists (a reply that says "I'm sorry to hear" sympathises; one that says
"congratulations" to a layoff celebrates), so it is strict about form and blind to nuance: read the examples too.

    .venv/bin/python benchmarks/conversation_probes.py [--config FILE] [--json out.json] [--examples 10]

The probes are this project's own; the held-out conversations of the maintainers check the same things.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SYMPATHY = (
    r"sorry|so hard|that'?s hard|really hard|tough|difficult|painful|heartbreaking|awful|terrible|sad to hear|"
    r"must (?:be|feel|have been)|that sounds (?:hard|rough|awful|painful|stressful|scary|frightening|lonely)|"
    r"here for you|i understand|take care|hang in there|not your fault|that'?s a lot|upsetting|worr"
)
CELEBRATION = (
    r"congratulat|great news|wonderful news|awesome|so happy for|how exciting|"
    r"that'?s (?:great|amazing|wonderful|fantastic)|yay|hooray|lovely to (?:see|hear)|glad to hear"
)
WARMTH = (
    r"congratulat|wonderful|great|amazing|fantastic|awesome|exciting|excited|happy for you|so happy|glad|"
    r"lovely|delighted|thrilled|proud|brilliant|well done|good for you|that'?s (?:so )?(?:nice|cool|sweet)"
)
CONDOLENCE = r"sorry|condolence|loss|sad to hear|that'?s hard|tough time|difficult time|must be hard"


@dataclass(frozen=True)
class Probe:
    kind: str  # bad_news, good_news, recall, identity, factual
    turns: tuple[str, ...]
    expect: tuple[str, ...] = ()  # recall/identity/factual: one of these must appear in the last reply
    refuse: tuple[str, ...] = ()  # and none of these


BAD_NEWS = (
    "My grandmother passed away last night.",
    "I failed my driving test again today.",
    "My girlfriend broke up with me this morning.",
    "The doctor says my dad has cancer.",
    "I got laid off from the factory today.",
    "Someone stole my bike outside the library.",
    "Our cat was hit by a car yesterday.",
    "I didn't get into the university I wanted.",
    "My best friend moved away and I feel so alone.",
    "I've been feeling really anxious about my exams and I can't sleep.",
    "My house flooded and we lost almost everything.",
    "I had a terrible day at work, my boss yelled at me in front of everyone.",
)
GOOD_NEWS = (
    "I passed my final exam!",
    "My sister just had twins this morning!",
    "I finally got the job I interviewed for!",
    "We bought our first house today!",
    "I ran my first marathon and finished it!",
    "My daughter took her first steps today!",
    "I got accepted into medical school!",
    "My paintings are going to be shown in a gallery!",
    "We're getting married in June!",
    "I got a promotion at work today!",
    "My test results came back and I'm completely healthy!",
    "I won the chess tournament at my club!",
)
FILLER = ("What's a good thing to cook tonight?", "It's raining a lot here today.")
RECALL = (
    (("Hi, my name is Priya.", FILLER[0], "What is my name?"), ("Priya",)),
    (("Hello, I'm Tomasz.", "What is my name?"), ("Tomasz",)),
    (("My name is Keiko and I work as a nurse.", FILLER[1], "Do you remember my name?"), ("Keiko",)),
    (("I have a dog called Pepper.", FILLER[0], "What is my dog called?"), ("Pepper",)),
    (("I have a cat named Mochi.", "What's my cat's name?"), ("Mochi",)),
    (("My sister Lena is visiting me this weekend.", FILLER[1], "What is my sister's name?"), ("Lena",)),
    (("Call me Rafa.", FILLER[0], "What did I say my name was?"), ("Rafa",)),
    (("I live in Porto.", FILLER[1], "Where do I live?"), ("Porto",)),
    (("I have a rabbit called Clover.", FILLER[1], "What's the name of my rabbit?"), ("Clover",)),
    (("Hi, my name's Dmitri. I'm a bit tired today.", FILLER[0], "What's my name?"), ("Dmitri",)),
)
IDENTITY = (
    (("What is your name?",), ()),
    (("Who are you?",), ()),
    (("Hi, my name is Maya. What's your name?",), ("Maya",)),
    (("My name is Oliver.", "And what should I call you?"), ("Oliver",)),
    (("Hello there! Do you have a name?",), ()),
)
FACTUAL = (
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many legs does a spider have?", ("eight", "8")),
    ("What is two plus three?", ("five", "5")),
    ("Which planet do we live on?", ("Earth",)),
    ("What do bees make?", ("honey",)),
    ("What is frozen water called?", ("ice",)),
    ("How many hours are in a day?", ("24", "twenty-four", "twenty four")),
)


def probes(persona_name: str) -> list[Probe]:
    out = [Probe("bad_news", (text,)) for text in BAD_NEWS]
    out += [Probe("good_news", (text,)) for text in GOOD_NEWS]
    out += [Probe("recall", turns, expect) for turns, expect in RECALL]
    out += [Probe("identity", turns, (persona_name,), refuse) for turns, refuse in IDENTITY]
    out += [Probe("factual", (text,), expect) for text, expect in FACTUAL]
    return out


def _has(pattern: str, text: str) -> bool:
    return re.search(rf"(?:{pattern})", text, flags=re.IGNORECASE) is not None


def _mentions(words: tuple[str, ...], text: str) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE) for word in words)


def score(probe: Probe, reply: str) -> bool:
    if probe.kind == "bad_news":
        return _has(SYMPATHY, reply) and not _has(CELEBRATION, reply)
    if probe.kind == "good_news":
        return _has(WARMTH, reply) and not _has(CONDOLENCE, reply)
    if probe.kind == "recall" and any(_claims_name(word, reply) for word in probe.expect):
        return False  # "My name is Priya": the right name, taken as its own
    return _mentions(probe.expect, reply) and not _mentions(probe.refuse, reply)


def _claims_name(name: str, reply: str) -> bool:
    return re.search(rf"\b(?:my name is|my name's|i'm|i am|call me)\s+{re.escape(name)}\b", reply, re.I) is not None


def run(config: str | None, persona_name: str, speak: bool = False) -> list[dict]:
    """Every probe through one `voiceos chat --jsonl` process; each probe's turns with their replies."""
    command = [sys.executable, "-m", "voiceos"] + (["--config", config] if config else []) + ["chat", "--jsonl"]
    command += ["--speak"] if speak else []
    lines, owners = [], []
    plan = probes(persona_name)
    for number, probe in enumerate(plan):
        lines.append(json.dumps({"reset": True}))
        owners.append(None)
        for turn in probe.turns:
            lines.append(json.dumps({"text": turn}))
            owners.append(number)
    done = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"voiceos chat failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    outputs = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(outputs) != len(lines):
        raise SystemExit(f"expected {len(lines)} output lines, got {len(outputs)}")
    results = [{"kind": p.kind, "turns": [], "probe": p} for p in plan]
    for owner, output in zip(owners, outputs, strict=True):
        if owner is not None:
            results[owner]["turns"].append(output)
    return results


def summarize(results: list[dict]) -> dict:
    by_kind: dict[str, list[bool]] = {}
    words, seconds, long_replies = [], [], 0
    for result in results:
        last = result["turns"][-1]
        ok = "error" not in last and score(result["probe"], last["reply"])
        result["ok"] = ok
        by_kind.setdefault(result["kind"], []).append(ok)
        for turn in result["turns"]:
            if "words" in turn:
                words.append(turn["words"])
                seconds.append(turn.get("audio_s", 0.0))
                long_replies += turn["words"] > 40
    rates = {kind: round(sum(oks) / len(oks), 3) for kind, oks in by_kind.items()}
    empathy = by_kind.get("bad_news", []) + by_kind.get("good_news", [])
    return {
        "conversations": len(results),
        "empathy": round(sum(empathy) / len(empathy), 3),
        **rates,
        "median_words": statistics.median(words),
        "median_audio_s": statistics.median(seconds) if any(seconds) else None,  # with --speak
        "replies_over_40_words": long_replies,
        "replies": len(words),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="voiceos config file (default: the project's)")
    parser.add_argument("--persona-name", default=None, help="the name identity probes expect (default: config's)")
    parser.add_argument("--json", metavar="FILE", help="write every exchange and the summary here")
    parser.add_argument("--examples", type=int, default=10, help="random exchanges to print")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speak", action="store_true", help="synthesize the replies too: median seconds of audio")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from voiceos.config import load_config

    name = args.persona_name or load_config(args.config).persona.name
    start = time.monotonic()
    results = run(args.config, name, args.speak)
    summary = summarize(results)
    summary["wall_s"] = round(time.monotonic() - start, 1)
    exchanges = [
        (r["kind"], t.get("input", ""), t.get("reply", t.get("error")), r["ok"])
        for r in results
        for t in r["turns"][-1:]
    ]
    for kind, said, reply, ok in random.Random(args.seed).sample(exchanges, min(args.examples, len(exchanges))):
        print(f"[{kind}{'' if ok else ', MISSED'}] {said!r} -> {reply!r}")
    print(json.dumps(summary, indent=1))
    if args.json:
        for result in results:
            result.pop("probe")
        Path(args.json).write_text(json.dumps({"summary": summary, "results": results}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
