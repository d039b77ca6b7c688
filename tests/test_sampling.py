"""How the embedded model's decoders pick each token (voiceos/dialogue/sampling.py): pure logic on given logits."""

from __future__ import annotations

import time

import torch

from voiceos.config import DialogueOptions
from voiceos.dialogue.lm import GenerationStats
from voiceos.dialogue.sampling import seen_tokens, stream_tokens

# the greedy choice (5) leads by a little: sampling at temperature 1 often picks another
LOGITS = torch.tensor([4.0, 4.0, 4.0, 4.0, 0.0, 5.0])


class Digits:
    """A detokenizer for the test's vocabulary: each token is its own digit."""

    def push(self, token: int) -> str:
        return str(token)

    def finish(self) -> str:
        return ""


def reply(options: DialogueOptions, limit: int = 6) -> str:
    tokens = stream_tokens(
        LOGITS.clone(),
        lambda _token: LOGITS.clone(),
        limit=limit,
        seen=seen_tokens([], len(LOGITS)),
        options=options,
        stop_ids=frozenset(),
        detok=Digits(),
        stats=GenerationStats(),
        started=time.perf_counter(),
    )
    return "".join(tokens)


def test_greedy_decoding_picks_the_most_likely_token_every_time():
    assert reply(DialogueOptions(repetition_penalty=1.0)) == "555555"


def test_opening_sampling_varies_only_the_first_tokens_and_a_seed_fixes_them():
    openings = set()
    for seed in range(12):
        options = DialogueOptions(repetition_penalty=1.0, opening_temperature=1.0, opening_tokens=2, seed=seed)
        said = reply(options)
        assert said[2:] == "5555" and reply(options) == said  # greedy after the opening; the seed repeats it
        openings.add(said[:2])
    assert len(openings) > 3
