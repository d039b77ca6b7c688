"""Fine-tuning conversations made by voiceos (no corpus): the assistant's own name, what the user told it, and short
facts. The names, places and questions here do not appear in ``benchmarks/conversation_probes.py``.

- ``persona``: asked its name (sometimes after the user gave theirs), it answers with the persona's; a user who
  introduces themselves with a remark is greeted by their name and answered;
- ``recall``: the user told a fact turns ago (the fact is in the system prompt, put there by the same extractor the
  pipeline uses), then asks for it back, after zero to two everyday exchanges;
- ``factual``: short questions with one-sentence answers, so that what the base model does well stays.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from voiceos.dialogue.tuning_corpora import Exchange
from voiceos.dialogue.types import Messages

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
    "Tom",
    "Beth",
    "Ken",
    "Dara",
    "Lior",
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
    ("On which continent is Egypt?", "Egypt is in Africa."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("How many days are in a leap year?", "A leap year has three hundred and sixty-six days."),
    ("What do bats use to find their way in the dark?", "Bats use echoes of their own calls to find their way."),
]
ASK_NAME = [
    "What's your name?",
    "What is your name?",
    "Who am I talking to?",
    "Do you have a name?",
    "What should I call you?",
    "Sorry, who are you again?",
    "Tell me your name.",
    "And you are?",
]
ASK_MY_NAME = [
    "What's my name?",
    "Do you remember my name?",
    "What did I say my name was?",
    "Do you know my name?",
    "Do you know what my name is?",
    "Who am I?",
    "Say my name.",
]
ACKS = ["Got it, thanks for telling me.", "Nice! I'll remember.", "Thanks, good to know.", "Okay, noted."]


def persona_case(rng: random.Random, me: str, chat: Sequence[Exchange]) -> tuple[str, str]:
    """(what the user said, the assistant's reply) when its own name is asked, or when the user introduces
    themselves with a remark (a DailyDialog exchange from ``chat``: greeted by name, then that reply)."""
    case = rng.randrange(3)
    if case == 0:
        return rng.choice(ASK_NAME), rng.choice(
            [f"I'm {me}, your voice assistant.", f"My name is {me}.", f"I'm {me}. What can I do for you?"]
        )
    user = rng.choice(USER_NAMES)
    if case == 1:
        said = rng.choice(
            [
                f"Hi, I'm {user}. {rng.choice(ASK_NAME)}",
                f"My name is {user}. {rng.choice(ASK_NAME)}",
                f"Hello, my name's {user}. And you?",
            ]
        )
        return said, rng.choice(
            [
                f"Nice to meet you, {user}! I'm {me}.",
                f"Hi {user}, I'm {me}. How can I help?",
                f"Lovely to meet you, {user}. My name is {me}.",
            ]
        )
    remark = rng.choice(chat)
    said = rng.choice([f"Hi, I'm {user}. {remark.said}", f"Hello! My name is {user}. {remark.said}"])
    return said, f"{rng.choice(['Nice to meet you', 'Hi', 'Hello'])}, {user}! {remark.reply}"


def recall_case(rng: random.Random, chat: Sequence[Exchange]) -> tuple[str, str, str]:
    """(what the user told, the question later, the answer)."""
    case = rng.randrange(5)
    if case in (0, 1):
        name = rng.choice(USER_NAMES)
        told = rng.choice([f"Hi, my name is {name}.", f"I'm {name}, by the way.", f"Call me {name}."])
        if case == 1:  # told in passing, with something else
            told = rng.choice([f"Hi, I'm {name}. ", f"My name's {name}. "]) + rng.choice(chat).said
        answer = rng.choice(
            [f"Your name is {name}.", f"You're {name}!", f"You told me you're {name}.", f"Yes, you're {name}."]
        )
        return told, rng.choice(ASK_MY_NAME), answer
    if case == 2:
        pet, name = rng.choice(PETS), rng.choice(PET_NAMES)
        told = rng.choice([f"I have a {pet} called {name}.", f"My {pet} is named {name}."])
        asked = rng.choice([f"What is my {pet} called?", f"Do you remember my {pet}'s name?"])
        return told, asked, rng.choice([f"Your {pet} is called {name}.", f"{name}! Your {pet}."])
    if case == 3:
        who, name = rng.choice(PEOPLE), rng.choice(USER_NAMES)
        told = f"My {who} {name} is coming over tomorrow."
        return told, f"What's my {who}'s name?", rng.choice([f"Your {who} is {name}.", f"It's {name}."])
    city = rng.choice(CITIES)
    told = rng.choice([f"I live in {city}.", f"I just moved to {city}."])
    return told, "Where do I live?", rng.choice([f"You live in {city}.", f"In {city}, you told me."])


def recall_turns(rng: random.Random, chat: Sequence[Exchange]) -> tuple[list[str], Messages, str, str]:
    """(the user's turns, the conversation before the question, the question, the answer): the fact, an
    acknowledgement, zero to two everyday exchanges from ``chat``, then the question."""
    told, asked, answer = recall_case(rng, chat)
    history = [{"role": "user", "content": told}, {"role": "assistant", "content": rng.choice(ACKS)}]
    for filler in rng.sample(list(chat), rng.randrange(3)):
        history += [{"role": "user", "content": filler.said}, {"role": "assistant", "content": filler.reply}]
    return [*(m["content"] for m in history if m["role"] == "user"), asked], history, asked, answer
