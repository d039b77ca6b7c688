"""Facts the user tells about themselves, taken from what they say with patterns (no model, microseconds a turn).

Each :class:`Fact` has a ``key`` (its slot: a newer fact with the same key replaces the older, as when the user
corrects themselves) and a ``text`` written about "the user", ready for the LM's system prompt. The patterns cover
what people say to a voice assistant about themselves: their name, the people and pets in their life, where they
live or come from, their work, what they like, and their plans. They are deliberately narrow: a missed fact costs
a "what was your dog called again?", a wrong one is repeated back at the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PETS = "dog|cat|puppy|kitten|hamster|rabbit|bunny|parrot|bird|fish|goldfish|horse|pony|tortoise|turtle|snake|lizard"
PEOPLE = (
    "wife|husband|partner|son|daughter|boy|girl|kid|baby|brother|sister|mother|mom|mum|father|dad|friend|"
    "best friend|boyfriend|girlfriend|fiance|fiancee|fiancé|fiancée|boss|grandmother|grandma|granny|grandfather|"
    "grandpa|aunt|uncle|cousin|niece|nephew|neighbour|neighbor|roommate|flatmate|colleague|teacher"
)
# Words that follow "I'm" or "call me" without being a name.
NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "so",
        "very",
        "really",
        "just",
        "not",
        "here",
        "back",
        "home",
        "fine",
        "good",
        "ok",
        "okay",
        "sorry",
        "sure",
        "glad",
        "happy",
        "sad",
        "tired",
        "feeling",
        "going",
        "trying",
        "looking",
        "calling",
        "from",
        "in",
        "at",
        "on",
        "with",
        "and",
        "but",
        "or",
    ]
)
NAME = r"([A-Z][a-zà-ÿ'-]+(?: [A-Z][a-zà-ÿ'-]+)?)"  # ASR and people both capitalise names
END = r"(?=$|[.,!?;]| and\b| but\b| because\b| who\b| which\b)"
PHRASE = r"([A-Za-z][\w' -]{1,40}?)"


@dataclass(frozen=True)
class Fact:
    key: str  # the slot: "name", "pet:dog", "person:sister", "home", "likes:jazz", ...
    text: str  # "The user's name is Maya."

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "text": self.text}

    def told_back(self) -> str:
        """The fact said to the user: "The user has a dog called Rex." -> "you have a dog called Rex"."""
        text = re.sub(r"\s*\([^)]*\)", "", self.text).rstrip(".")
        for about, to_you in TOLD_BACK:
            if text.startswith(about):
                return to_you + text[len(about) :]
        return text


# how each kind of fact (the templates below) reads when said back to the user
TOLD_BACK = (
    ("The user's", "your"),
    ("The user is", "you are"),
    ("The user has", "you have"),
    ("The user lives", "you live"),
    ("The user works", "you work"),
    ("The user likes", "you like"),
    ("The user dislikes", "you dislike"),
    ("The user", "you"),
)


def _name_ok(name: str) -> bool:
    return name.split()[0].lower() not in NOT_NAMES


def _clean(phrase: str) -> str:
    return re.sub(r"\s+", " ", phrase).strip(" -'")


def _name_facts(text: str) -> list[Fact]:
    """The last name the user gave for themselves (the words around it in any case, the name capitalised)."""
    patterns = (
        rf"\b(?i:my name(?: is|'s)(?: actually| really| in fact)?) {NAME}",
        rf"\b(?i:call me|i'm called|i am called|they call me|you can call me) {NAME}",
        rf"^(?i:(?:hi|hello|hey|good (?:morning|afternoon|evening))?[ ,!.]*(?:i'm|i am|this is|it's)) {NAME}{END}",
    )
    names = [m.group(1) for pattern in patterns for m in re.finditer(pattern, text) if _name_ok(m.group(1))]
    return [Fact("name", f"The user's name is {names[-1]}.")] if names else []


GROUP = ("friend", "best friend", "colleague", "neighbour", "neighbor", "cousin", "kid", "boy", "girl")


def _relation_facts(text: str) -> list[Fact]:
    """Pets and people with their names: "my dog Biscuit", "I have a cat called Tom", "my sister is called Ana"."""
    facts = []
    for kinds, slot in ((PETS, "pet"), (PEOPLE, "person")):
        patterns = (
            rf"\b(?i:my) ({kinds})(?:'s name is| is called| is named| named| called|,)? {NAME}(?![\w'-])",
            rf"\b(?i:I|we) (?i:have|own|got|adopted) (?i:an?) (?:(?i:new|little|old) )?({kinds}) "
            rf"(?i:called|named) {NAME}",
        )
        for pattern in patterns:
            for match in re.finditer(pattern, text):
                kind, name = match.group(1).lower(), match.group(2)
                if not _name_ok(name):
                    continue
                if slot == "pet" or kind in GROUP:  # several of them: one fact each
                    facts.append(Fact(f"{slot}:{kind}:{name.lower()}", f"The user has a {kind} called {name}."))
                else:
                    facts.append(Fact(f"{slot}:{kind}", f"The user's {kind} is called {name}."))
    return facts


def _life_facts(text: str) -> list[Fact]:
    facts = []
    rules = (
        (rf"\bI (?:live|am living|'m living) in {PHRASE}{END}", "home", "The user lives in {}."),
        (rf"\bI (?:just |recently )?moved to {PHRASE}{END}", "home", "The user lives in {} (moved there recently)."),
        (rf"\bI(?:'m| am) (?:originally )?from {PHRASE}{END}", "origin", "The user is from {}."),
        (rf"\bI work ((?:as an?|at|for|in) {PHRASE[1:-1]}){END}", "work", "The user works {}."),
        (
            rf"\bI(?:'m| am) an? ((?:[a-z]+ )?(?:nurse|teacher|doctor|engineer|student|developer|programmer|"
            rf"designer|chef|cook|driver|lawyer|writer|artist|musician|farmer|accountant|scientist|mechanic|"
            rf"electrician|plumber|pilot|firefighter|police officer|baker|barista|cashier|manager)){END}",
            "work",
            "The user is a {}.",
        ),
        (rf"\b[Mm]y favou?rite ({PHRASE[1:-1]}) is {PHRASE}{END}", None, "The user's favourite {} is {}."),
        (
            rf"\bI (?:really )?(?:love|like|enjoy|adore) (?!you\b|it\b|that\b|this\b|to hear\b){PHRASE}{END}",
            "likes",
            "The user likes {}.",
        ),
        (
            rf"\bI (?:really )?(?:hate|dislike|can't stand) (?!you\b|it\b|that\b|this\b){PHRASE}{END}",
            "dislikes",
            "The user dislikes {}.",
        ),
        (rf"\bI(?:'m| am) (?:going to|planning to|gonna|about to) {PHRASE}{END}", "plan", "The user is going to {}."),
        (rf"\bI(?:'m| am) allergic to {PHRASE}{END}", "allergy", "The user is allergic to {}."),
        (rf"\bmy birthday is {PHRASE}{END}", "birthday", "The user's birthday is {}."),
    )
    for pattern, slot, template in rules:
        for match in re.finditer(pattern, text, flags=re.IGNORECASE):
            parts = [_clean(g) for g in match.groups()]
            if not all(parts):
                continue
            if slot is None:  # favourite X
                key = f"favourite:{parts[0].lower()}"
            elif slot in ("likes", "dislikes", "plan", "allergy"):
                key = f"{slot}:{parts[0].lower()}"
            else:
                key = slot
            facts.append(Fact(key, template.format(*parts)))
    return facts


def extract_facts(text: str) -> list[Fact]:
    """The facts about the user in one thing they said (often none), in the order they were said."""
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    return [*_name_facts(text), *_relation_facts(text), *_life_facts(text)]
