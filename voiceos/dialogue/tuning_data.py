"""Conversations for fine-tuning the dialogue LM, in the exact form its prompts take at run time.

Each :class:`TuningExample` is the chat messages a reply is generated after (the persona system prompt with any
facts about the user, earlier turns, the user's turn, and the emotion note where the policy would add one) and the
reply to learn. Five kinds, mixed in fixed shares by :func:`build_training_set`:

- ``empathy``: EmpatheticDialogues, the speaker's opening and the listener's first reply; only replies that meet
  the feeling (sympathy for a negative situation, warmth for a positive one), 3-30 words;
- ``chat``: DailyDialog, an utterance and its reply (the release's spaced tokens joined back), 3-30 words;
- ``persona``: asked its name (sometimes after the user gave theirs), the assistant answers with the persona's;
- ``recall``: the user told a fact turns ago (the fact is in the system prompt, put there by the same extractor
  the pipeline uses), then asks for it back;
- ``factual``: short questions with one-sentence answers, so that what the base model does well stays.

Persona names vary (the configured one in half the examples), so the model learns to read the name from the prompt.
The names, places and questions here do not appear in ``benchmarks/conversation_probes.py``.
Licences: EmpatheticDialogues CC BY-NC 4.0, DailyDialog CC BY-NC-SA 4.0 (both non-commercial).
"""

from __future__ import annotations

import itertools
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from voiceos.config import Config
from voiceos.dialogue.persona import persona_prompt
from voiceos.emotion.policy import FEELINGS
from voiceos.memory.facts import extract_facts

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "dialogue"
Messages = list[dict[str, str]]

# EmpatheticDialogues' 32 situations, by the Ekman emotion the head would read (None: positive, no note at run time)
NEGATIVE = {
    "sadness": "sad lonely devastated disappointed nostalgic sentimental guilty ashamed embarrassed",
    "fear": "afraid terrified anxious apprehensive",
    "anger": "angry furious annoyed jealous",
    "disgust": "disgusted",
}
ED_EKMAN = {word: label for label, words in NEGATIVE.items() for word in words.split()}
POSITIVE = set(
    [
        "joyful",
        "excited",
        "proud",
        "grateful",
        "hopeful",
        "content",
        "confident",
        "impressed",
        "surprised",
        "caring",
        "faithful",
    ]
)
SYMPATHY = re.compile(
    r"\b(sorry|oh no|that'?s (?:so |really |too )?(?:sad|bad|awful|terrible|horrible|rough|tough|hard|scary|"
    r"frustrating|annoying|unfortunate)|that sounds (?:hard|awful|terrible|rough|scary|frustrating|stressful)|"
    r"must (?:be|have been|feel)|i understand|hope (?:you|it|things|everything)|hang in there|awful|terrible)\b",
    re.I,
)
WARMTH = re.compile(
    r"\b(congrat\w*|that'?s (?:so |really )?(?:great|awesome|wonderful|amazing|fantastic|nice|cool|exciting)|"
    r"good for you|happy for you|well done|wow|how exciting|sounds (?:great|fun|amazing|wonderful|lovely)|"
    r"proud of you|good job|awesome)\b",
    re.I,
)
CELEBRATION = re.compile(r"\b(congrat\w*|awesome|yay|how exciting|great news)\b", re.I)
PERSONA_NAMES = [
    "Milo",
    "Nova",
    "Juniper",
    "Remy",
    "Sol",
    "Wren",
    "Ada",
    "Otto",
    "Iris",
    "Kit",
    "Bea",
    "Ravi",
    "Luca",
    "Mina",
    "Theo",
    "Zara",
]
USER_NAMES = [
    "Sam",
    "Alex",
    "Jordan",
    "Hana",
    "Omar",
    "Lucia",
    "Ines",
    "Mateo",
    "Chen",
    "Aisha",
    "Noah",
    "Freya",
    "Elif",
    "Kwame",
    "Sofia",
    "Arjun",
    "Greta",
    "Yusuf",
    "Nadia",
    "Pablo",
    "Ingrid",
    "Tariq",
    "Mei",
    "Hugo",
    "Amara",
    "Felix",
    "Leila",
    "Bruno",
    "Sakura",
    "Emeka",
    "Clara",
    "Ivan",
    "Rosa",
    "Jonas",
    "Anika",
]
PET_NAMES = [
    "Biscuit",
    "Max",
    "Luna",
    "Ziggy",
    "Nala",
    "Pickles",
    "Rocky",
    "Olive",
    "Toffee",
    "Bruno",
    "Daisy",
    "Pip",
    "Scout",
    "Maple",
    "Bean",
    "Ollie",
]
PETS = ["dog", "cat", "hamster", "parrot", "puppy", "kitten", "tortoise"]
PEOPLE = ["brother", "daughter", "son", "friend", "wife", "husband", "cousin", "neighbour"]
CITIES = [
    "Lisbon",
    "Denver",
    "Nairobi",
    "Leeds",
    "Osaka",
    "Gdansk",
    "Austin",
    "Lyon",
    "Bergen",
    "Cork",
    "Quito",
    "Adelaide",
    "Seville",
    "Tampere",
]
FACTUAL = [
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is the capital of Germany?", "Berlin is the capital of Germany."),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa."),
    ("What is the capital of Egypt?", "The capital of Egypt is Cairo."),
    ("What's the capital of Kenya?", "Nairobi is the capital of Kenya."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("What is the capital of Russia?", "The capital of Russia is Moscow."),
    ("How many months are there in a year?", "There are twelve months in a year."),
    ("How many minutes are in an hour?", "There are sixty minutes in an hour."),
    ("How many legs does a dog have?", "A dog has four legs."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("What is four plus four?", "Four plus four is eight."),
    ("What is ten minus three?", "Ten minus three is seven."),
    ("What is six times two?", "Six times two is twelve."),
    ("What is one plus one?", "One plus one is two."),
    ("What colour is grass?", "Grass is green."),
    ("What colour is a banana?", "A ripe banana is yellow."),
    ("What do cows drink?", "Cows drink water."),
    ("Which animal says meow?", "A cat says meow."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("What is the biggest planet in our solar system?", "Jupiter is the biggest planet in our solar system."),
    ("Which star is closest to the Earth?", "The Sun is the star closest to the Earth."),
    ("What do we breathe in to live?", "We breathe in oxygen."),
    ("At what temperature does water boil?", "Water boils at one hundred degrees Celsius at sea level."),
    ("What do caterpillars turn into?", "Caterpillars turn into butterflies or moths."),
    ("What language is spoken in Brazil?", "People in Brazil speak Portuguese."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("What season comes after winter?", "Spring comes after winter."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("What do plants need from the sun?", "Plants need sunlight to make their food."),
    ("Which is heavier, a kilo of feathers or a kilo of stones?", "They weigh the same: one kilo each."),
    ("What day comes after Monday?", "Tuesday comes after Monday."),
    ("What is the tallest animal?", "The giraffe is the tallest animal."),
    ("What gas do plants give off?", "Plants give off oxygen."),
]


@dataclass(frozen=True)
class TuningExample:
    messages: Messages  # the prompt as the pipeline builds it, up to (and with) the note after the user's turn
    reply: str
    kind: str


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


def _words(text: str) -> int:
    return len(text.split())


def _usable(text: str, low: int = 3, high: int = 30) -> bool:
    return low <= _words(text) <= high and "_" not in text and "http" not in text and text[-1:] in ".!?"


class _Prompts:
    """System prompts and emotion notes as the pipeline makes them, with the persona name varied."""

    def __init__(self, config: Config, rng: random.Random) -> None:
        self.config, self.rng = config, rng

    def persona(self) -> str:
        return self.config.persona.name if self.rng.random() < 0.5 else self.rng.choice(PERSONA_NAMES)

    def system(self, name: str, facts_from: list[str] = ()) -> str:
        facts = [fact for text in facts_from for fact in extract_facts(text)]
        persona = replace(self.config.persona, name=name)
        return persona_prompt(persona, self.config.dialogue.system_prompt, facts)

    def note(self, label: str) -> str | None:
        policy = self.config.emotion
        if label not in policy.note_for.split() or not policy.context_note.strip():
            return None
        return policy.context_note.format(feeling=FEELINGS[label])


def empathy_examples(path: Path, prompts: _Prompts, *, gold_only: bool = False) -> list[TuningExample]:
    """The speaker's opening and the listener's first reply; ``gold_only`` keeps every usable pair (for dev)."""
    out = []
    for conv in read_jsonl(path):
        turns = conv["turns"]
        if len(turns) < 2 or turns[0]["role"] != "speaker" or turns[1]["role"] != "listener":
            continue
        said, reply, emotion = turns[0]["text"].strip(), turns[1]["text"].strip(), conv["emotion"]
        if not _usable(reply) or not 3 <= _words(said) <= 60:
            continue
        label = ED_EKMAN.get(emotion)
        if not gold_only:
            if label is not None and (not SYMPATHY.search(reply) or CELEBRATION.search(reply)):
                continue
            if label is None and (emotion not in POSITIVE or not WARMTH.search(reply) or SYMPATHY.search(reply)):
                continue
        messages = [{"role": "system", "content": prompts.system(prompts.persona())}, {"role": "user", "content": said}]
        note = prompts.note(label) if label else None
        if note and (gold_only or prompts.rng.random() < 0.75):  # the head misses some: learn to answer without it
            messages.append({"role": "system", "content": note})
        out.append(TuningExample(messages, reply, "empathy"))
    return out


def chat_examples(path: Path, prompts: _Prompts) -> list[TuningExample]:
    out = []
    for dialog in read_jsonl(path):
        utterances = [detokenize_dailydialog(u) for u in dialog["utterances"]]
        for said, reply in itertools.pairwise(utterances[:3]):
            if _usable(reply) and 3 <= _words(said) <= 40:
                system = prompts.system(prompts.persona())
                out.append(
                    TuningExample(
                        [{"role": "system", "content": system}, {"role": "user", "content": said}], reply, "chat"
                    )
                )
                break
    return out


def persona_examples(prompts: _Prompts, n: int) -> list[TuningExample]:
    rng, out = prompts.rng, []
    asks = [
        "What's your name?",
        "What is your name?",
        "Who am I talking to?",
        "Do you have a name?",
        "What should I call you?",
        "Sorry, who are you again?",
        "Tell me your name.",
    ]
    for _ in range(n):
        me = prompts.persona()
        if rng.random() < 0.5:
            user = rng.choice(USER_NAMES)
            said = rng.choice(
                [
                    f"Hi, I'm {user}. {rng.choice(asks)}",
                    f"My name is {user}. {rng.choice(asks)}",
                    f"Hello, my name's {user}. And you?",
                ]
            )
            system = prompts.system(me, [said])
            reply = rng.choice(
                [
                    f"Nice to meet you, {user}! I'm {me}.",
                    f"Hi {user}, I'm {me}. How can I help?",
                    f"Lovely to meet you, {user}. My name is {me}.",
                ]
            )
        else:
            said, system = rng.choice(asks), prompts.system(me)
            reply = rng.choice(
                [f"I'm {me}, your voice assistant.", f"My name is {me}.", f"I'm {me}. What can I do for you?"]
            )
        out.append(
            TuningExample([{"role": "system", "content": system}, {"role": "user", "content": said}], reply, "persona")
        )
    return out


def _recall_case(rng: random.Random) -> tuple[str, str, str]:
    """(what the user told, the question later, the answer)."""
    case = rng.randrange(4)
    if case == 0:
        name = rng.choice(USER_NAMES)
        told = rng.choice([f"Hi, my name is {name}.", f"I'm {name}, by the way.", f"Call me {name}."])
        asked = rng.choice(["What's my name?", "Do you remember my name?", "What did I say my name was?"])
        return told, asked, rng.choice([f"Your name is {name}.", f"You're {name}!", f"You told me you're {name}."])
    if case == 1:
        pet, name = rng.choice(PETS), rng.choice(PET_NAMES)
        told = rng.choice([f"I have a {pet} called {name}.", f"My {pet} is named {name}."])
        asked = rng.choice([f"What is my {pet} called?", f"Do you remember my {pet}'s name?"])
        return told, asked, rng.choice([f"Your {pet} is called {name}.", f"{name}! Your {pet}."])
    if case == 2:
        who, name = rng.choice(PEOPLE), rng.choice(USER_NAMES)
        told = f"My {who} {name} is coming over tomorrow."
        return told, f"What's my {who}'s name?", rng.choice([f"Your {who} is {name}.", f"It's {name}."])
    city = rng.choice(CITIES)
    told = rng.choice([f"I live in {city}.", f"I just moved to {city}."])
    return told, "Where do I live?", rng.choice([f"You live in {city}.", f"In {city}, you told me."])


def recall_examples(prompts: _Prompts, n: int, chat: list[TuningExample]) -> list[TuningExample]:
    """The fact, an acknowledgement, a chit-chat turn from ``chat``, then the question."""
    rng, out = prompts.rng, []
    for _ in range(n):
        told, asked, answer = _recall_case(rng)
        filler = rng.choice(chat)
        messages = [
            {"role": "system", "content": prompts.system(prompts.persona(), [told])},
            {"role": "user", "content": told},
            {"role": "assistant", "content": rng.choice(["Got it, thanks for telling me.", "Nice! I'll remember."])},
            {"role": "user", "content": filler.messages[-1]["content"]},
            {"role": "assistant", "content": filler.reply},
            {"role": "user", "content": asked},
        ]
        out.append(TuningExample(messages, answer, "recall"))
    return out


def factual_examples(prompts: _Prompts, n: int) -> list[TuningExample]:
    return [
        TuningExample(
            [{"role": "system", "content": prompts.system(prompts.persona())}, {"role": "user", "content": q}],
            a,
            "factual",
        )
        for q, a in (prompts.rng.choice(FACTUAL) for _ in range(n))
    ]


SHARES = {"empathy": 0.5, "chat": 0.15, "persona": 0.1, "recall": 0.15, "factual": 0.1}


def build_training_set(config: Config, data_dir: Path, n: int, seed: int) -> list[TuningExample]:
    """``n`` examples in the shares of :data:`SHARES`, shuffled; the same ``seed`` gives the same set."""
    rng = random.Random(seed)
    prompts = _Prompts(config, rng)
    empathy = empathy_examples(data_dir / "empatheticdialogues" / "train.jsonl", prompts)
    chat = chat_examples(data_dir / "dailydialog" / "train.jsonl", prompts)
    counts = {kind: round(n * share) for kind, share in SHARES.items()}
    rng.shuffle(empathy)
    rng.shuffle(chat)
    negative = [e for e in empathy if SYMPATHY.search(e.reply)]  # the filter let only sympathy through for these
    positive = [e for e in empathy if not SYMPATHY.search(e.reply)]
    half = counts["empathy"] // 2
    examples = [*negative[:half], *positive[: counts["empathy"] - half], *chat[: counts["chat"]]]
    examples += persona_examples(prompts, counts["persona"])
    examples += recall_examples(prompts, counts["recall"], chat[counts["chat"] :] or chat)
    examples += factual_examples(prompts, counts["factual"])
    rng.shuffle(examples)
    return examples


def build_dev_set(config: Config, data_dir: Path, n: int, seed: int) -> list[TuningExample]:
    """``n`` gold listener replies from EmpatheticDialogues' dev split (no filter on the reply), seeded."""
    rng = random.Random(seed)
    examples = empathy_examples(data_dir / "empatheticdialogues" / "valid.jsonl", _Prompts(config, rng), gold_only=True)
    rng.shuffle(examples)
    return examples[:n]
