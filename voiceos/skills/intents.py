"""Understanding requests with Home Assistant's own libraries: hassil (its intent parser) over the English sentences of
``home-assistant-intents``, used as they are, plus voiceos' templates in the same format (``sentences/en.yaml``).

Only the intents some skill handles are compiled in: HA's device intents ("turn on the kitchen light") would need
HA's entities and are left to the dialogue LM. HA's sentences name its entity lists (``{name}``, ``{area}``,
``{floor}``); voiceos has no devices, so they are empty and such sentences never match.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

SENTENCES_DIR = Path(__file__).resolve().parent / "sentences"
HA_ENTITY_LISTS = ("name", "area", "floor")
# Words people put before a request ("oh, never mind", "hey, what's the time?", "okay so what day is it"), taken off
# the start only: the same words inside a sentence may matter.
LEADING_FILLERS = re.compile(
    r"^(?:(?:hey|hi|okay|ok|oh|so|um+|uh+|er+m?|well|alright|all right|and|but|hmm+)\b[\s,.!]*)+", re.I
)

# Old spellings an ASR trained on public-domain books writes ("What day is it to-day?": Moonshine in `voiceos bench`)
OLD_SPELLINGS = re.compile(r"\bto-(day|night|morrow)\b", re.I)


@dataclass(frozen=True)
class Slot:
    """One filled slot: its value (a number, a list's output value, or a wildcard's text) and the words said."""

    value: Any
    text: str
    is_wildcard: bool = False


@dataclass(frozen=True)
class IntentMatch:
    """A sentence template matched the whole utterance."""

    intent: str
    slots: dict[str, Slot] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def value(self, name: str, default: Any = None) -> Any:
        slot = self.slots.get(name)
        return default if slot is None else slot.value

    def words(self, name: str) -> str:
        slot = self.slots.get(name)
        return "" if slot is None else str(slot.text if not slot.is_wildcard else slot.value).strip()


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """HA's intents dict with voiceos' templates added: new intents, more sentences for HA's, lists and rules."""
    merged = copy.deepcopy(base)
    for name, intent in (extra.get("intents") or {}).items():
        target = merged.setdefault("intents", {}).setdefault(name, {"data": []})
        target.setdefault("data", []).extend(copy.deepcopy(intent.get("data") or []))
    for key in ("lists", "expansion_rules"):
        merged.setdefault(key, {}).update(extra.get(key) or {})
    return merged


def _without_delayed_commands(intent: dict[str, Any]) -> dict[str, Any]:
    """HA's timers also run a command later ("turn off the lights in 5 minutes"): voiceos has no devices to command,
    and "how many minutes are in three hours" would parse as one. Those sentences are left out."""
    data = [d for d in intent.get("data", []) if "conversation_command" not in str(d.get("sentences"))]
    return {**intent, "data": data}


class IntentRecognizer:
    """hassil over HA's English intents and voiceos' own templates, for the intents named in ``wanted``."""

    def __init__(self, wanted: Iterable[str], extra_files: Iterable[Path] = ()) -> None:
        import home_assistant_intents
        from hassil import Intents
        from hassil.intents import SlotList, TextSlotList

        start = time.perf_counter()
        data = home_assistant_intents.get_intents("en")
        if data is None:  # (the package ships English: only a broken install has none)
            raise ValueError("home-assistant-intents has no English intents")
        for path in (SENTENCES_DIR / "en.yaml", *extra_files):
            data = _merge(data, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        wanted = set(wanted)
        data["intents"] = {
            name: _without_delayed_commands(intent) for name, intent in data["intents"].items() if name in wanted
        }
        missing = sorted(wanted - set(data["intents"]))
        if missing:
            raise ValueError(f"no sentences for the intents {', '.join(missing)}")
        self.intents = Intents.from_dict(data)
        self.slot_lists: dict[str, SlotList] = {name: TextSlotList.from_strings([]) for name in HA_ENTITY_LISTS}
        self.names = frozenset(data["intents"])
        log.debug("intents loaded in %.0f ms: %s", (time.perf_counter() - start) * 1000, ", ".join(sorted(wanted)))

    def warm(self) -> None:
        """hassil builds its number tries on the first sentence (~0.4 s): pay that at start-up."""
        self.first("set a timer for five minutes")

    def ranked(self, text: str) -> Iterator[IntentMatch]:
        """Every parse of ``text``, best first: fewer wildcards, more literal text (hassil's own ranking)."""
        from hassil import recognize_ranked

        text = OLD_SPELLINGS.sub(r"to\1", text.strip())
        spoken = LEADING_FILLERS.sub("", text) or text
        for result in recognize_ranked(spoken, self.intents, slot_lists=self.slot_lists, language="en"):
            slots = {
                name: Slot(entity.value, entity.text or "", entity.is_wildcard)
                for name, entity in result.entities.items()
            }
            yield IntentMatch(result.intent.name, slots, dict(result.intent_metadata or {}), spoken)

    def first(self, text: str) -> IntentMatch | None:
        return next(self.ranked(text), None)
