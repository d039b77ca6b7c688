"""When the user's turn ends: end-of-turn strategies and the turn-completion model behind one of them."""

from voiceos.turn.end_of_turn import (
    EndOfTurn,
    SilenceOnly,
    TurnModel,
    TurnVerdict,
    WordsEndOfTurn,
    load_end_of_turn,
    strategy_name,
)
from voiceos.turn.smart_turn import SmartTurnModel, TurnModelUnavailable

__all__ = [
    "EndOfTurn",
    "SilenceOnly",
    "SmartTurnModel",
    "TurnModel",
    "TurnModelUnavailable",
    "TurnVerdict",
    "WordsEndOfTurn",
    "load_end_of_turn",
    "strategy_name",
]
