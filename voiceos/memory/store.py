"""What the assistant remembers about the user: facts kept for the conversation, and on disk only when asked.

Within a conversation the facts always stay (they are what lets it answer "what is my dog called?"). They are
written to ``$XDG_DATA_HOME/voiceos/memory.json`` (0600, in a 0700 directory) only with ``privacy.remember: true``;
``voiceos forget`` deletes that file with everything else, and ``voiceos memory --remove N`` one fact.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from voiceos.errors import VoiceosError
from voiceos.memory.facts import Fact, extract_facts
from voiceos.storage import data_dir, write_private_json

log = logging.getLogger(__name__)

MEMORY_FILE = "memory.json"
MAX_FACTS = 40  # the oldest go first: the prompt stays short (each fact is ~10 tokens)


def memory_path() -> Path:
    return data_dir() / MEMORY_FILE


class MemoryStore:
    """Facts by slot, in the order they were learnt; ``path`` set = kept across restarts (privacy.remember)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()  # learnt on the model thread, listed and removed from the event loop
        self._facts: dict[str, Fact] = {}
        if path is not None:
            self._facts = {fact.key: fact for fact in read_facts(path)}

    @property
    def facts(self) -> list[Fact]:
        with self._lock:
            return list(self._facts.values())

    @property
    def persistent(self) -> bool:
        return self.path is not None

    def facts_with(self, told: list[Fact] | tuple[Fact, ...]) -> list[Fact]:
        """The facts as they will be once ``told`` is kept (for a reply to the words that told them)."""
        facts = {fact.key: fact for fact in self.facts}
        for fact in told:
            facts.pop(fact.key, None)
            facts[fact.key] = fact
        return list(facts.values())[-MAX_FACTS:]

    def learn(self, user_text: str) -> list[Fact]:
        """Keep the facts in what the user said (a fact for a slot already held replaces it); the new ones."""
        return self.keep(extract_facts(user_text))

    def keep(self, found: list[Fact]) -> list[Fact]:
        """Keep these facts (each replaces the one of its slot); the ones that were new."""
        with self._lock:
            new = [fact for fact in found if self._facts.get(fact.key) != fact]
            for fact in new:
                self._facts.pop(fact.key, None)  # re-inserted at the end: the newest last
                self._facts[fact.key] = fact
            while len(self._facts) > MAX_FACTS:
                del self._facts[next(iter(self._facts))]
        if new:
            self._save()
        return new

    def forget(self, facts: list[Fact]) -> None:
        """Forget these facts (as :meth:`facts` gave them)."""
        with self._lock:
            for fact in facts:
                self._facts.pop(fact.key, None)
        self._save()

    def remove(self, number: int) -> Fact:
        """Remove fact ``number`` (1-based, as :meth:`facts` lists them)."""
        facts = self.facts
        if not 1 <= number <= len(facts):
            raise VoiceosError(f"no fact number {number} (there are {len(facts)}; `voiceos memory` lists them)")
        fact = facts[number - 1]
        with self._lock:
            self._facts.pop(fact.key, None)
        self._save()
        return fact

    def clear(self) -> int:
        """Forget every fact (the file too); how many there were."""
        with self._lock:
            count = len(self._facts)
            self._facts.clear()
        if self.path is not None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("cannot delete the memory file %s: %s", self.path, err.strerror or err)
        return count

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            write_facts(self.path, self.facts)
        except OSError as err:
            log.warning("cannot save what voiceos remembers to %s: %s", self.path, err.strerror or err)


def read_facts(path: Path) -> list[Fact]:
    """The facts saved in ``path`` ([] when there is none); a damaged file is reported and ignored, not fatal."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Fact(str(item["key"]), str(item["text"])) for item in data["facts"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("ignoring the memory file %s: it cannot be read (%s)", path, err)
        return []


def write_facts(path: Path, facts: list[Fact]) -> None:
    """Replace ``path`` atomically with ``facts`` (0600)."""
    write_private_json(path, {"version": 1, "facts": [fact.as_json() for fact in facts]})


def memory_command(store: MemoryStore, remove: object = None) -> dict:
    """The ``memory`` control command and ``voiceos memory``: the facts, after removing fact ``remove`` if given."""
    removed = None
    if remove is not None:
        if isinstance(remove, bool) or not isinstance(remove, int):
            raise VoiceosError("'remove' must be a fact number, as `voiceos memory` lists them")
        removed = store.remove(remove).as_json()
    return {
        "facts": [fact.as_json() for fact in store.facts],
        "kept_across_restarts": store.persistent,
        "removed": removed,
    }
