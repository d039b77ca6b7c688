"""Whether an utterance is for the assistant: the turn-start strategies (Pipecat's shape: small classes the daemon
asks, beside the end-of-turn ones). ``always`` answers everything it hears (a headset, a kiosk); ``name`` answers what
is addressed to it by name, and, for ``wake.follow_up_s`` after it spoke, what follows without the name."""

from voiceos.wake.names import NameSpotter, Spotted
from voiceos.wake.start import AlwaysStart, NameStart, TurnStart, load_turn_start

__all__ = ["AlwaysStart", "NameSpotter", "NameStart", "Spotted", "TurnStart", "load_turn_start"]
