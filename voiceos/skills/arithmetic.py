"""Sums and unit questions: "what is 17 times 23", "what's fifteen percent of eighty", "how many minutes are in three
hours", "convert five miles to kilometres". Numbers in words or digits, as Whisper writes them.

The templates hand over the words after "what is" whatever they are; what this module cannot read as a sum or a
conversion ("what is the capital of France", "what is love") is declined, and the dialogue LM answers it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

from voiceos.skills.base import SkillContext, SkillReply
from voiceos.skills.intents import IntentMatch
from voiceos.spoken.numbers import parse_number, say_number

# operator words -> symbol; longer phrases first so "multiplied by" wins over "by"
BINARY = (
    ("multiplied by", "*"),
    ("divided by", "/"),
    ("to the power of", "^"),
    ("percent of", "%"),
    ("% of", "%"),
    ("times", "*"),
    ("plus", "+"),
    ("minus", "-"),
    ("take away", "-"),
    ("over", "/"),
    ("x", "*"),
    ("*", "*"),
    ("×", "*"),
    ("/", "/"),
    ("÷", "/"),
    ("+", "+"),
)
SPOKEN_OP = {"*": "times", "/": "divided by", "+": "plus", "-": "minus", "^": "to the power of", "%": "percent of"}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "^": 3}
OPERATOR = re.compile(r"\s+(" + "|".join(re.escape(word) for word, _ in BINARY) + r")\s+|(?<=\d)\s*([*×/÷+^])\s*(?=\d)")


class CannotRead(ValueError):
    """Not a sum or a conversion: the LM gets the words instead."""


def _operand(words: str) -> tuple[float, str]:
    """A number, or one with a square/cube/root around it; its value and how to say it."""
    words = words.strip()
    root = re.fullmatch(r"(?:the )?square root of (.+)", words)
    if root:
        value, said = _operand(root.group(1))
        if value < 0:
            raise ValueError("I can't take the square root of a negative number.")
        return math.sqrt(value), f"the square root of {said}"
    power = re.fullmatch(r"(.+?) (squared|cubed)", words)
    if power:
        value, said = _operand(power.group(1))
        return value ** (2 if power.group(2) == "squared" else 3), f"{said} {power.group(2)}"
    number = parse_number(words)
    if number is None:
        raise CannotRead(words)
    return number, say_number(number)


def evaluate(expression: str) -> tuple[float, str]:
    """The value of a spoken sum and the sum said back in words; CannotRead when it is not one; ValueError (its
    message said to the user) for a sum that has no answer (division by zero)."""
    text = " " + " ".join(expression.lower().strip(" ?.!").replace(",", "").split()) + " "
    text = re.sub(r"^ (?:the )?(?:result of |answer to |sum of )", " ", text)
    pieces = OPERATOR.split(text)
    operands: list[str] = [pieces[0]]
    operators: list[str] = []
    for i in range(1, len(pieces), 3):
        word = pieces[i] or pieces[i + 1]
        operators.append(dict(BINARY)[word])
        operands.append(pieces[i + 2])
    if not operators and not re.search(r"square root|squared|cubed", text):
        raise CannotRead(expression)
    values, said = zip(*(_operand(o) for o in operands), strict=True)
    output: list[float] = [values[0]]
    stack: list[str] = []

    def apply(op: str) -> None:
        b, a = output.pop(), output.pop()
        if op in "/" and b == 0:
            raise ValueError("I can't divide by zero.")
        result = {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "/": a / b if b else math.nan,
            "%": a / 100 * b,
            "^": a**b if abs(b) <= 100 else math.inf,
        }[op]
        output.append(result)

    for op, value in zip(operators, values[1:], strict=True):
        while stack and PRECEDENCE[stack[-1]] >= PRECEDENCE[op]:
            apply(stack.pop())
        stack.append(op)
        output.append(value)
    while stack:
        apply(stack.pop())
    spoken = said[0]
    for op, part in zip(operators, said[1:], strict=True):
        spoken += f" {SPOKEN_OP[op]} {part}"
    return output[0], spoken


def say_result(value: float) -> str:
    if math.isinf(value) or abs(value) > 1e15:
        raise ValueError("That number is too big for me to say.")
    exact = abs(value - round(value, 2)) < 1e-9
    return ("" if exact else "about ") + say_number(value)


# -- units ----------------------------------------------------------------------------------------------------------
# name -> (dimension, size in the dimension's base unit); temperatures are handled apart
UNITS: dict[str, tuple[str, float]] = {
    "second": ("time", 1),
    "minute": ("time", 60),
    "hour": ("time", 3600),
    "day": ("time", 86400),
    "week": ("time", 604800),
    "year": ("time", 365 * 86400),
    "millimetre": ("length", 0.001),
    "centimetre": ("length", 0.01),
    "metre": ("length", 1),
    "kilometre": ("length", 1000),
    "inch": ("length", 0.0254),
    "foot": ("length", 0.3048),
    "yard": ("length", 0.9144),
    "mile": ("length", 1609.344),
    "gram": ("mass", 1),
    "kilogram": ("mass", 1000),
    "ounce": ("mass", 28.349523125),
    "pound": ("mass", 453.59237),
    "stone": ("mass", 6350.29318),
    "tonne": ("mass", 1_000_000),
    "millilitre": ("volume", 0.001),
    "litre": ("volume", 1),
    "teaspoon": ("volume", 0.00492892),
    "tablespoon": ("volume", 0.0147868),
    "cup": ("volume", 0.2365882365),
    "pint": ("volume", 0.473176473),
    "gallon": ("volume", 3.785411784),
}
TEMPERATURES = ("celsius", "fahrenheit", "kelvin")
ALIASES = {
    "sec": "second",
    "secs": "second",
    "min": "minute",
    "mins": "minute",
    "hr": "hour",
    "hrs": "hour",
    "mm": "millimetre",
    "cm": "centimetre",
    "m": "metre",
    "km": "kilometre",
    "ft": "foot",
    "feet": "foot",
    "inches": "inch",
    "yd": "yard",
    "g": "gram",
    "kg": "kilogram",
    "kilo": "kilogram",
    "kilos": "kilogram",
    "oz": "ounce",
    "lb": "pound",
    "lbs": "pound",
    "ml": "millilitre",
    "l": "litre",
    "tsp": "teaspoon",
    "tbsp": "tablespoon",
    "centigrade": "celsius",
    "c": "celsius",
    "f": "fahrenheit",
    "k": "kelvin",
}
PLURALS = {"foot": "feet", "inch": "inches", "celsius": "degrees Celsius", "fahrenheit": "degrees Fahrenheit"}


def unit_name(words: str) -> str | None:
    """The unit in ``words`` ("kilometers", "lbs", "degrees fahrenheit"), in our spelling, or None."""
    word = words.lower().strip(" ?.!").removeprefix("degrees ").removeprefix("degree ").strip()
    word = word.replace("meter", "metre").replace("liter", "litre")
    if word in ALIASES:
        return ALIASES[word]
    for candidate in (word, word.removesuffix("s"), word.removesuffix("es")):
        if candidate in UNITS or candidate in TEMPERATURES:
            return candidate
    return None


def _say_unit(unit: str, count: float) -> str:
    if unit in ("celsius", "fahrenheit"):
        return PLURALS[unit] if count != 1 else f"degree {unit.capitalize()}"
    if unit == "kelvin":
        return "kelvin"
    return unit if count == 1 else PLURALS.get(unit, unit + "s")


def _quantity(words: str) -> tuple[float, str]:
    """ "three hours", "a mile", "5 kg", "100 degrees fahrenheit" -> (3, "hour") ..."""
    words = re.sub(r"^(?:there )?in\s+", "", words.lower().strip(" ?.!"))
    words = re.sub(r"(?<=\d)(?=[a-z])", " ", words)  # "5kg"
    parts = words.split()
    for cut in range(len(parts) - 1, 0, -1):
        unit = unit_name(" ".join(parts[cut:]))
        if unit is None:
            continue
        number_words = " ".join(parts[:cut]).removesuffix(" degrees").removesuffix(" degree")
        amount = 1.0 if number_words in ("a", "an", "one") else parse_number(number_words)
        if amount is not None:
            return amount, unit
    unit = unit_name(words)
    if unit is not None:  # "how many feet in a mile" said as "how many feet in mile"
        return 1.0, unit
    raise CannotRead(words)


def convert(amount: float, unit: str, to: str) -> float:
    if unit in TEMPERATURES or to in TEMPERATURES:
        if unit not in TEMPERATURES or to not in TEMPERATURES:
            raise ValueError(f"I can't turn {_say_unit(unit, 2)} into {_say_unit(to, 2)}.")
        kelvin = {"celsius": amount + 273.15, "fahrenheit": (amount - 32) * 5 / 9 + 273.15, "kelvin": amount}[unit]
        return {"celsius": kelvin - 273.15, "fahrenheit": (kelvin - 273.15) * 9 / 5 + 32, "kelvin": kelvin}[to]
    (dimension, size), (to_dimension, to_size) = UNITS[unit], UNITS[to]
    if dimension != to_dimension:
        raise ValueError(f"I can't turn {_say_unit(unit, 2)} into {_say_unit(to, 2)}.")
    return amount * size / to_size


class Arithmetic:
    intents: ClassVar[tuple[str, ...]] = ("VoiceosCalculate", "VoiceosConvertUnits")

    def handle(self, matches: Sequence[IntentMatch], context: SkillContext) -> SkillReply | None:
        for match in matches:
            try:
                if match.intent == "VoiceosCalculate":
                    value, said = evaluate(match.words("expression"))
                    return SkillReply(f"{said.capitalize()} is {say_result(value)}.", match.intent)
                return self._convert(match)
            except CannotRead:
                continue
            except ValueError as err:  # a sum or conversion with no answer: say why
                return SkillReply(str(err), match.intent)
        return None

    def _convert(self, match: IntentMatch) -> SkillReply:
        to = unit_name(re.sub(r"\s+(?:are|is|there)$", "", match.words("unit_to").lower().strip()))
        if to is None:
            raise CannotRead(match.words("unit_to"))
        amount, unit = _quantity(match.words("quantity"))
        value = convert(amount, unit, to)
        result = say_result(value)
        given = f"{say_number(amount)} {_say_unit(unit, amount)}"
        if match.text.lower().startswith("how many"):
            return SkillReply(f"There are {result} {_say_unit(to, value)} in {given}.", match.intent)
        return SkillReply(f"{given.capitalize()} is {result} {_say_unit(to, value)}.", match.intent)
