"""Exchanges from the two human-written corpora, with the conversation so far, for fine-tuning the dialogue LM.

An :class:`Exchange` is what the user said (with up to ``MAX_HISTORY`` earlier turns) and the gold reply. Which gold
replies are kept does not depend on a list of phrases: a reply is kept when it is *about what the user said*,

- it shares a content word with the user's turns so far (a crude stem: "walked"/"walk", "dogs"/"dog"), or
- it answers the user's question or request (DailyDialog's dialogue acts: question or directive, then inform or
  commissive),

it is 3-30 words of whole sentences, and it calls nobody by a name the conversation did not use ("Sure, Jim."). A
generic "Oh no! I'm sorry to hear that." or "That's great!" shares nothing with what was said and goes, without
being named anywhere. Then no opening (the first two words) may open more than ``OPENER_CAP`` of a kind's replies,
so the stock openings that the corpora favour do not become the model's every first word.

- DailyDialog (Li et al., 2017; CC BY-NC-SA 4.0): everyday conversations, each utterance labelled with a dialogue
  act and an emotion (most "no emotion"); any utterance after the first is a reply.
- EmpatheticDialogues (Rashkin et al., 2019; CC BY-NC 4.0): a speaker tells a situation, a listener answers; every
  listener turn (not only the first) is a reply, after the conversation so far.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_HISTORY = 4  # earlier turns kept before the user's (the newest), as a fitted prompt keeps the newest
OPENER_CAP = 0.03
# function words and words every reply uses: sharing one of these does not make a reply about what was said
NOT_CONTENT_WORDS = """\
a an the and or but if so because as of to in on at by for with about from into over after before than then i me
my mine myself you your yours we us our they them their he him his she her it its this that these those there
here is am are was were be been being do does did have has had having will would shall should can could may
might must not no yes oh ok okay well just really very too also quite what which who whom whose when where why
how all any some one ones get got getting go going went gone make made know think want like say said tell told
see look come came take took give gave i'm you're it's that's don't didn't can't isn't wasn't i've i'll i'd
you've you'll we're they're there's what's let's let thing things something anything nothing lot much many more
most good great nice sure right yeah hey hi hello thank thanks please sorry wow time day today now still even
ever never always"""
NOT_CONTENT = frozenset(NOT_CONTENT_WORDS.split())
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SUFFIXES = ("ing", "ed", "es", "s", "ly")


@dataclass(frozen=True)
class Exchange:
    history: tuple[tuple[str, str], ...]  # (role, text), oldest first; the last one is the assistant's
    said: str  # the user's turn
    reply: str  # the gold reply
    act: str  # the user's dialogue act (DailyDialog: inform, question, directive, commissive; ED: speaker)
    emotion: str  # the corpus's label of the user's turn (DailyDialog) or of the conversation (ED)


def read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def detokenize_dailydialog(text: str) -> str:
    """DailyDialog's "Say , Jim , how about it ?" -> "Say, Jim, how about it?"."""
    text = re.sub(r"\s+([,.!?;:%])", r"\1", text.strip().replace("\u2019", "'"))
    text = re.sub(r"\s+'\s*(s|re|ve|ll|d|m|t)\b", r"'\1", text)
    text = re.sub(r"\s+n't\b", "n't", text)
    text = re.sub(r"([.!?])(?=[A-Z])", r"\1 ", text)  # "right.But" -> "right. But"
    return re.sub(r"\s{2,}", " ", text)


def words(text: str) -> int:
    return len(text.split())


def usable(text: str, low: int = 3, high: int = 30) -> bool:
    return low <= words(text) <= high and "_" not in text and "http" not in text and text[-1:] in ".!?"


def content_stems(text: str) -> set[str]:
    """The content words of ``text``, lower case, with one common suffix cut off."""
    out = set()
    for word in _WORD.findall(text.lower()):
        if word in NOT_CONTENT or len(word) < 3:
            continue
        for suffix in _SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        out.add(word)
    return out


def opener(text: str) -> str:
    """The reply's first two words, lower case ("Oh no! I'm sorry" -> "oh no")."""
    return " ".join(_WORD.findall(text.lower())[:2])


def names_only_it_uses(reply: str, before: str) -> bool:
    """The reply calls someone by a name the conversation did not use ("Sure, Jim." to a user never named Jim): a
    capitalised word that does not open a sentence and was not said before."""
    for sentence in re.split(r"(?<=[.!?])\s+", reply):
        for word in re.findall(r"[A-Za-z]+", sentence)[1:]:
            if word[0].isupper() and word != "I" and word not in before and word.lower() not in NOT_CONTENT:
                return True
    return False


def about_what_was_said(reply: str, user_turns: list[str], answers: bool) -> bool:
    """Whether ``reply`` is about what the user said: it answers them (``answers``) or shares a content word."""
    return answers or bool(content_stems(reply) & content_stems(" ".join(user_turns)))


def _window(turns: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The last ``MAX_HISTORY`` turns before the user's, starting with a user turn (as a fitted prompt does)."""
    kept = turns[-MAX_HISTORY:]
    while kept and kept[0][0] != "user":
        kept = kept[1:]
    return tuple(kept)


def dailydialog_exchanges(path: Path, rng: random.Random, *, keep_all: bool = False) -> list[Exchange]:
    """One exchange per dialogue (a random reply that is about what was said; ``keep_all``: any reply, the dev set's
    gold replies), dialogues in file order."""
    out = []
    for dialog in read_jsonl(path):
        utterances = [detokenize_dailydialog(u) for u in dialog["utterances"]]
        acts, emotions = dialog["acts"], dialog["emotions"]
        if not len(utterances) == len(acts) == len(emotions):
            continue
        candidates = []
        for i in range(1, len(utterances)):
            said, reply = utterances[i - 1], utterances[i]
            if not usable(reply) or not 2 <= words(said) <= 40:
                continue
            # the speakers alternate: the user is whoever spoke at i-1
            roles = ["user" if (i - 1 - j) % 2 == 0 else "assistant" for j in range(i - 1)]
            history = _window(list(zip(roles, utterances[: i - 1], strict=True)))
            user_turns = [said, *(text for role, text in history if role == "user")]
            answers = acts[i - 1] in ("question", "directive") and acts[i] in ("inform", "commissive")
            before = " ".join(utterances[:i])
            relevant = about_what_was_said(reply, user_turns, answers) and not names_only_it_uses(reply, before)
            if relevant or keep_all:
                candidates.append(Exchange(history, said, reply, acts[i - 1], emotions[i - 1]))
        if candidates:
            out.append(rng.choice(candidates))
    return out


def empathetic_exchanges(path: Path, rng: random.Random, *, first_only: bool = False) -> list[Exchange]:
    """One listener turn per conversation that is about what the speaker said (any of them, with the conversation
    so far); ``first_only``: the first listener reply, kept whatever it says (the dev set's gold replies)."""
    out = []
    for conv in read_jsonl(path):
        turns = [("user" if t["role"] == "speaker" else "assistant", t["text"].strip()) for t in conv["turns"]]
        candidates = []
        for i in range(1, 2 if first_only else len(turns)):
            (role_said, said), (role, reply) = turns[i - 1], turns[i]
            if role != "assistant" or role_said != "user" or not usable(reply) or not 3 <= words(said) <= 60:
                continue
            history = _window(turns[: i - 1])
            if not first_only:
                user_turns = [said, *(text for r, text in history if r == "user")]
                before = " ".join(text for _, text in turns[:i])
                answers = said.rstrip().endswith("?")
                if not about_what_was_said(reply, user_turns, answers) or names_only_it_uses(reply, before):
                    continue
            candidates.append(Exchange(history, said, reply, "speaker", conv["emotion"]))
        if candidates:
            out.append(rng.choice(candidates))
    return out


def capped(exchanges: list[Exchange], n: int, cap: float = OPENER_CAP) -> list[Exchange]:
    """The first ``n`` of ``exchanges`` such that no opening starts more than ``cap`` of them (at least one each)."""
    limit, counts, out = max(1, int(cap * n)), Counter[str](), []
    for exchange in exchanges:
        key = opener(exchange.reply)
        if counts[key] < limit:
            counts[key] += 1
            out.append(exchange)
            if len(out) == n:
                break
    return out
