"""Scripted conversations through `voiceos chat --jsonl`, scored for what a user judges first in the replies.

Each probe is a short conversation (a new one each: `{"reset": true}` first) whose last reply is scored:

- neutral: an everyday remark, question or request (neither bad nor good news) gets no condolence ("I'm sorry to
  hear that", "Oh no!") and no celebration ("That's awesome!", "Congratulations");
- empathy: bad news is acknowledged (sympathy) and not celebrated; good news gets warmth and no condolence; the
  same for news told over two turns (``told_bad``, ``told_good``: a neutral opening, then what happened);
- recall: "what is my name / what is my dog called" a turn or two after the user said it comes back right;
- identity: asked its own name, it gives the persona's (and not the user's);
- factual: simple questions stay right.

Over every reply of every probe: median words and replies over 40 words (none of these probes asks for detail), the
share of the most common first two words, distinct-2 (distinct word pairs over all word pairs), empty replies and the
sentences each guard kept from being said (`dropped`). On bad news (told in one turn or two), the share of replies
that ask "what happened" although the user has just said it. Scoring is by word lists (a reply that says "I'm sorry
to hear" sympathises; one that says "congratulations" to a layoff celebrates), so it is strict about form and blind to
nuance: read the examples too.

    .venv/bin/python benchmarks/conversation_probes.py [--config FILE] [--json out.json] [--examples 20]

The probes are this project's own; the held-out conversations of the maintainers check the same things.
"""

from __future__ import annotations

import argparse
import collections
import itertools
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
    r"here for you|i understand|take care|hang in there|not your fault|that'?s a lot|upsetting|worr|oh no"
)
CELEBRATION = (
    r"congratulat|great news|wonderful news|awesome|so happy for|how exciting|"
    r"that'?s (?:so |really )?(?:great|amazing|wonderful|fantastic)|that is (?:so |really )?(?:great|amazing|"
    r"wonderful|fantastic)|yay|hooray|lovely to (?:see|hear)|glad to hear|well done|good for you"
)
WARMTH = (
    r"congratulat|wonderful|great|amazing|fantastic|awesome|exciting|excited|happy for you|so happy|glad|"
    r"lovely|delighted|thrilled|proud|brilliant|well done|good for you|that'?s (?:so )?(?:nice|cool|sweet)"
)
CONDOLENCE = (
    r"sorry (?:to hear|for your|about)|so sorry|really sorry|condolence|your loss|sad to hear|oh no|"
    r"that'?s (?:so |really )?(?:terrible|awful|horrible|sad|too bad|a shame|unfortunate)|that is (?:so |really )?"
    r"(?:terrible|awful|horrible|sad)|must (?:be|have been) (?:hard|tough|difficult|awful)|hang in there|tough time|"
    r"difficult time"
)
ASKS_WHAT_HAPPENED = r"what happened|what's happened|what has happened|what went wrong"


@dataclass(frozen=True)
class Probe:
    kind: str  # neutral, bad_news, good_news, told_bad, told_good, recall, identity, factual
    turns: tuple[str, ...]
    expect: tuple[str, ...] = ()  # recall/identity/factual: one of these must appear in the last reply
    refuse: tuple[str, ...] = ()  # and none of these


NEUTRAL = (
    "I'm making a pot of tea.",
    "The bus stop moved to the other side of the road.",
    "I'm going to the post office after lunch.",
    "My neighbour is painting his fence.",
    "I'm reading a book about old trains.",
    "We need more eggs for the weekend.",
    "I just finished washing the dishes.",
    "The printer is out of paper.",
    "I'm wearing my blue jacket today.",
    "Tell my brother to pick up the keys from the front desk.",
    "I'm thinking about painting the kitchen green.",
    "I usually take the train to work.",
    "There's a film on later that I might watch.",
    "I'm going to water the plants.",
    "I put the laundry in the machine.",
    "My car needs an oil change.",
    "Let's talk about gardening.",
    "Can you suggest a name for a goldfish?",
    "What should I have for breakfast?",
    "How do I boil an egg?",
    "Give me an idea for a weekend trip.",
    "What's a good board game for four people?",
    "I'm on the train now.",
    "So the meeting moved to the room upstairs.",
    "The shop on the corner sells fresh bread.",
    "I walked the long way round the park.",
    "My cousin plays the cello.",
    "I'm cooking rice for dinner.",
    "I'm writing a letter to my aunt.",
    "Tell me something about owls.",
    "Which is better for a picnic, sandwiches or salad?",
    "Okay, and what about the ferry?",
    "So Peter went on to study law.",
    "I moved the armchair closer to the window.",
    "We are out of coffee filters.",
    "Let the kids know they should bring their coats.",
    "I'm folding the towels.",
    "The kettle is on.",
)
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
    "My manager criticised my work in front of the whole team.",
    "My phone fell in the river and it's gone.",
    "The vet says our old dog doesn't have long left.",
    "I missed my flight and lost the whole holiday.",
    "My uncle is in hospital after a heart attack.",
    "I broke my wrist playing football.",
    "My son is being bullied at school.",
    "We had to cancel the wedding.",
    "I lost my wallet with all my cards in it.",
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
    "My little brother just passed his driving test!",
    "I got the apartment I really wanted!",
    "Our team won the regional final!",
    "I just finished writing my first novel!",
)
TOLD_BAD = (
    ("I had my driving lesson this afternoon.", "I crashed into a parked car and the instructor shouted at me."),
    ("I went to the vet with my cat today.", "They told me she has a serious illness."),
    ("I heard back from the company I applied to.", "They gave the job to someone else."),
)
TOLD_GOOD = (
    ("I heard back from the university today.", "I got a full scholarship!"),
    ("My wife had her scan this morning.", "We're having a baby girl!"),
    ("I entered a baking contest last week.", "My cake won first prize!"),
)
FILLER = ("What's a good thing to cook tonight?", "The wind is picking up here.")
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
    (("Hi, my name's Dmitri. I'm a bit tired today.", FILLER[0], "Can you tell me my name?"), ("Dmitri",)),
)
IDENTITY = (
    (("What is your name?",), ()),
    (("Who are you?",), ()),
    (("Hi, my name is Maya. What's your name?",), ("Maya",)),
    (("My name is Oliver.", "And what should I call you?"), ("Oliver",)),
    (("Hello there! Do you have a name?",), ()),
    (("Hey, I'm Lucas. Who am I speaking with?",), ("Lucas",)),
)
FACTUAL = (
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of Ireland?", ("Dublin",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many legs does a spider have?", ("eight", "8")),
    ("What colour is snow?", ("white",)),
    ("What do bees make?", ("honey",)),
    ("What is frozen water called?", ("ice",)),
    ("Which animal has a trunk?", ("elephant", "elephants")),
    ("What is the capital of Norway?", ("Oslo",)),
    ("How many continents are there?", ("seven", "7")),
    ("What do you call a baby cat?", ("kitten",)),
    ("What is the opposite of up?", ("down",)),
    ("How many minutes are in half an hour?", ("thirty", "30")),
    ("What animal is known as the king of the jungle?", ("lion",)),
)
EMPATHY_KINDS = ("bad_news", "good_news", "told_bad", "told_good")


def probes(persona_name: str) -> list[Probe]:
    out = [Probe("neutral", (text,)) for text in NEUTRAL]
    out += [Probe("bad_news", (text,)) for text in BAD_NEWS]
    out += [Probe("good_news", (text,)) for text in GOOD_NEWS]
    out += [Probe("told_bad", turns) for turns in TOLD_BAD]
    out += [Probe("told_good", turns) for turns in TOLD_GOOD]
    out += [Probe("recall", turns, expect) for turns, expect in RECALL]
    out += [Probe("identity", turns, (persona_name,), refuse) for turns, refuse in IDENTITY]
    out += [Probe("factual", (text,), expect) for text, expect in FACTUAL]
    return out


def _has(pattern: str, text: str) -> bool:
    return re.search(rf"(?:{pattern})", text, flags=re.IGNORECASE) is not None


def _mentions(words: tuple[str, ...], text: str) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE) for word in words)


def score(probe: Probe, reply: str) -> bool:
    if probe.kind == "neutral":
        return not _has(CONDOLENCE, reply) and not _has(CELEBRATION, reply)
    if probe.kind in ("bad_news", "told_bad"):
        return _has(SYMPATHY, reply) and not _has(CELEBRATION, reply)
    if probe.kind in ("good_news", "told_good"):
        return _has(WARMTH, reply) and not _has(CONDOLENCE, reply)
    if probe.kind == "recall" and any(_claims_name(word, reply) for word in probe.expect):
        return False  # "My name is Priya": the right name, taken as its own
    return _mentions(probe.expect, reply) and not _mentions(probe.refuse, reply)


def _claims_name(name: str, reply: str) -> bool:
    return re.search(rf"\b(?:my name is|my name's|i'm|i am|call me)\s+{re.escape(name)}\b", reply, re.I) is not None


def words_of(reply: str) -> list[str]:
    """The reply's words, lower case, without punctuation ("Oh no! I'm" -> oh, no, i'm)."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", reply.lower())


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
    from voiceos.dialogue.tuning_corpora import content_stems  # "about what was said", as the training mix judges it

    by_kind: dict[str, list[bool]] = {}
    words, seconds, long_replies, empty, openers = [], [], 0, 0, collections.Counter()
    pairs: list[tuple[str, str]] = []
    dropped: collections.Counter = collections.Counter()
    asked_what_happened, bad = 0, 0
    neutral_condolence = neutral_celebration = neutral = 0
    about, told = 0, 0  # replies to remarks and news that share a content word with what the user said
    neutral_read: collections.Counter = collections.Counter()  # what the emotion head read in the neutral remarks
    for result in results:
        last = result["turns"][-1]
        if result["kind"] == "neutral":
            neutral_read[(last.get("user_emotion") or {}).get("label", "?")] += 1
        ok = "error" not in last and score(result["probe"], last["reply"])
        result["ok"] = ok
        by_kind.setdefault(result["kind"], []).append(ok)
        if result["kind"] == "neutral":
            neutral += 1
            neutral_condolence += _has(CONDOLENCE, last.get("reply", ""))
            neutral_celebration += _has(CELEBRATION, last.get("reply", ""))
        if result["kind"] in ("neutral", *EMPATHY_KINDS):
            told += 1
            about += bool(content_stems(last.get("reply", "")) & content_stems(" ".join(result["probe"].turns)))
        if result["kind"] in ("bad_news", "told_bad"):
            bad += 1
            asked_what_happened += _has(ASKS_WHAT_HAPPENED, last.get("reply", ""))
        for turn in result["turns"]:
            if "words" not in turn or turn.get("skill"):
                continue  # an error line, or a skill's answer (not the LM's words)
            words.append(turn["words"])
            seconds.append(turn.get("audio_s", 0.0))
            long_replies += turn["words"] > 40
            empty += not turn["reply"].strip()
            dropped.update(turn.get("dropped") or {})
            said = words_of(turn["reply"])
            openers[" ".join(said[:2])] += 1
            pairs += list(itertools.pairwise(said))
    rates = {kind: round(sum(oks) / len(oks), 3) for kind, oks in by_kind.items()}
    empathy = [ok for kind in EMPATHY_KINDS for ok in by_kind.get(kind, [])]
    opener, opened = openers.most_common(1)[0] if openers else ("", 0)
    return {
        "conversations": len(results),
        "empathy": round(sum(empathy) / len(empathy), 3),
        **rates,
        "median_words": statistics.median(words),
        "median_audio_s": statistics.median(seconds) if any(seconds) else None,  # with --speak
        "replies_over_40_words": long_replies,
        "empty_replies": empty,
        "replies": len(words),
        "top_opener": opener,
        "top_opener_share": round(opened / max(len(words), 1), 3),
        "distinct_2": round(len(set(pairs)) / max(len(pairs), 1), 3),
        "oh_no_opens": round(openers["oh no"] / max(len(words), 1), 3),
        "neutral_condolence": round(neutral_condolence / max(neutral, 1), 3),
        "neutral_celebration": round(neutral_celebration / max(neutral, 1), 3),
        "about_what_was_said": round(about / max(told, 1), 3),
        "bad_news_asks_what_happened": round(asked_what_happened / max(bad, 1), 3),
        "dropped": dict(dropped),
        "head_on_neutral": dict(neutral_read),
        "skill_turns": sum(1 for r in results for t in r["turns"] if t.get("skill")),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="voiceos config file (default: the project's)")
    parser.add_argument("--persona-name", default=None, help="the name identity probes expect (default: config's)")
    parser.add_argument("--json", metavar="FILE", help="write every exchange and the summary here")
    parser.add_argument("--examples", type=int, default=20, help="random exchanges to print (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speak", action="store_true", help="synthesize the replies too: median seconds of audio")
    parser.add_argument("--rescore", metavar="FILE", help="score the exchanges a --json FILE holds again, run nothing")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from voiceos.config import load_config

    name = args.persona_name or load_config(args.config).persona.name
    start = time.monotonic()
    if args.rescore:
        results = json.loads(Path(args.rescore).read_text(encoding="utf-8"))["results"]
        for result, probe in zip(results, probes(name), strict=True):
            result["probe"] = probe
    else:
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
    if args.json and not args.rescore:
        for result in results:
            result.pop("probe")
        Path(args.json).write_text(json.dumps({"summary": summary, "results": results}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
