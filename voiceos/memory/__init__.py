"""Memory of the user: facts taken from what they say (:mod:`.facts`) and where they are kept (:mod:`.store`)."""

from voiceos.memory.facts import Fact, extract_facts
from voiceos.memory.store import MemoryStore, memory_path

__all__ = ["Fact", "MemoryStore", "extract_facts", "memory_path"]
