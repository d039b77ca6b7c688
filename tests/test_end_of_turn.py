"""End of turn: the silence timer and the turn-completion model (Smart Turn v3.2 from the pipecat-ai wheel) on real
speech, replayed through the real endpointer as the daemon hears it (voiceos.turn.replay)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from voiceos.audio.files import read_audio
from voiceos.config import TurnOptions, VadOptions, config_from_dict
from voiceos.errors import ConfigError, ModelLoadError
from voiceos.turn import SilenceOnly, SmartTurnModel, TurnModel, TurnModelUnavailable, load_end_of_turn
from voiceos.turn.replay import replay
from voiceos.turn.smart_turn import bundled_model_path

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"
RATE = 16000


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurnModel:
    return SmartTurnModel.load()


def recording(name: str) -> np.ndarray:
    return read_audio(LIBRIVOX / name, RATE)


def with_pause(samples: np.ndarray, at_s: float, pause_ms: int) -> np.ndarray:
    """A pause of digital silence put in at ``at_s``, and 1.5 s of it after the end."""
    cut = int(at_s * RATE)
    gap, after = np.zeros(pause_ms * RATE // 1000, np.float32), np.zeros(int(1.5 * RATE), np.float32)
    return np.concatenate([samples[:cut], gap, samples[cut:], after])


# "had he married a more amiable woman he might have been made still more respectable than he was": complete at its
# end, and not after "had he married a more amiable woman". (The model calls some of LibriVox's sentence ends
# incomplete: a reader going on to the next sentence does not sound done; benchmarks/README.md, "End of turn".)
AMIABLE = "sense_and_sensibility_01_austen_64kb-0920.wav"
AFTER_WOMAN = (
    2.62  # s: the boundary after "... amiable woman" (faster-whisper's word times; 0.02-0.23 from 2.55 to 2.7)
)


def test_the_features_are_those_of_the_wheels_own_smart_turn_runner(smart_turn):
    """Pipecat's numpy copy of Whisper's log-mel, loaded from the wheel by path (importing pipecat itself would
    patch asyncio): our transformers features must be the same numbers."""
    spec = importlib.util.spec_from_file_location("features", bundled_model_path().parents[1] / "_whisper_features.py")
    assert spec is not None and spec.loader is not None
    theirs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs)
    audio = recording(AMIABLE)
    window = np.pad(audio, (8 * RATE - len(audio), 0))
    expected = theirs.compute_whisper_log_mel_features(window, do_normalize=True)
    assert np.abs(smart_turn.features(audio)[0] - expected).max() < 1e-4


def test_a_finished_sentence_is_complete_and_the_same_sentence_cut_mid_way_is_not(smart_turn):
    audio = recording(AMIABLE)
    pause = np.zeros(int(0.2 * RATE), np.float32)
    assert smart_turn.predict(np.concatenate([audio, pause])).probability > 0.9
    assert smart_turn.predict(np.concatenate([audio[: int(AFTER_WOMAN * RATE)], pause])).probability < 0.5


def test_a_complete_sentence_ends_the_turn_at_the_check_long_before_the_silence_timer(smart_turn):
    audio = with_pause(recording(AMIABLE), AFTER_WOMAN, 0)
    model = replay(audio, TurnModel(smart_turn, TurnOptions()), VadOptions())
    silence = replay(audio, SilenceOnly(), VadOptions())
    assert [end.by for end in model.ends] == ["model"] and [end.by for end in silence.ends] == ["silence"]
    assert model.ends[0].end_s == silence.ends[0].end_s  # the same utterance, ended sooner
    assert model.ends[0].decided_s < silence.ends[0].decided_s


def test_a_pause_inside_the_sentence_longer_than_the_hangover_ends_the_turn_only_without_the_model(smart_turn):
    audio = with_pause(recording(AMIABLE), AFTER_WOMAN, 600)
    silence = replay(audio, SilenceOnly(), VadOptions())
    assert len(silence.ends) == 2  # the 500 ms hangover cut the sentence in two
    model = replay(audio, TurnModel(smart_turn, TurnOptions()), VadOptions())
    assert len(model.ends) == 1 and model.ends[0].by == "model"  # one turn, ended after "amiable himself"
    assert [v.complete for v in model.verdicts] == [False, True]


def test_an_incomplete_verdict_leaves_the_turn_to_max_silence(smart_turn):
    """A pause longer than turn.max_silence_ms ends the turn even when the model says it is not complete."""
    audio = with_pause(recording(AMIABLE), AFTER_WOMAN, 1200)
    model = replay(audio, TurnModel(smart_turn, TurnOptions(max_silence_ms=800)), VadOptions())
    # The first end is the timer's although the model said incomplete. (How the rest ends is the model's call on a
    # shorter context: complete on a Xeon, 0.35 on an EPYC, so it is not this test's.)
    assert model.ends[0].by == "silence" and not model.verdicts[0].complete and len(model.ends) == 2


def test_config_chooses_the_strategy_and_auto_takes_the_model_where_it_loads(smart_turn):
    assert load_end_of_turn(TurnOptions(end_of_turn="silence")).name == "silence"
    chosen = load_end_of_turn(TurnOptions())
    assert chosen.name == "smart_turn" and "Smart Turn v3.2" in chosen.describe()
    assert chosen.vad_options(VadOptions()).hangover_ms == TurnOptions().max_silence_ms
    with pytest.raises(ConfigError, match=r"turn\.end_of_turn"):
        config_from_dict({"turn": {"end_of_turn": "guess"}})
    with pytest.raises(ConfigError, match=r"turn\.threshold"):
        config_from_dict({"turn": {"threshold": 1.5}})


def test_without_the_model_auto_falls_back_to_the_silence_timer_and_smart_turn_refuses(monkeypatch, tmp_path):
    import voiceos.turn.smart_turn as module

    monkeypatch.setattr(module, "MODEL_IN_WHEEL", "no/such/model.onnx")
    fallback = load_end_of_turn(TurnOptions())
    assert fallback.name == "silence" and "has no no/such/model.onnx" in fallback.describe()
    with pytest.raises(TurnModelUnavailable, match=r"has no no/such/model\.onnx"):
        load_end_of_turn(TurnOptions(end_of_turn="smart_turn"))
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="the turn model does not load"):
        SmartTurnModel(damaged)


def test_the_silence_strategy_keeps_the_endpointer_as_configured():
    vad = dataclasses.replace(VadOptions(), hangover_ms=650)
    assert SilenceOnly().vad_options(vad) == vad and SilenceOnly().check_ms == 0


@pytest.mark.parametrize(
    ("text", "unfinished"),
    [
        ("Unless to be...", True),
        ("for Queen of", True),
        ("then leisure to consider how much there might be", True),
        ("And Mr.", True),
        ("I was going to say...", True),
        ("Ten of clubs,", False),  # Moonshine's way of ending a line
        ("He was not an ill-disposed young man.", False),
        ("Ten of clubs.", False),
        ("What is my name?", False),
        ("Had he married a more amiable woman, he might have been made still more respectable than he was.", False),
        ("Where are you from?", False),
        ("I really want to.", False),
        ("I think so.", False),
        ("", False),
    ],
)
def test_a_transcript_that_stops_mid_phrase_sounds_unfinished(text, unfinished):
    from voiceos.turn.text import sounds_unfinished

    assert sounds_unfinished(text) is unfinished


def test_words_that_stop_mid_phrase_overrule_a_confident_complete(smart_turn, transcriber):
    """ "Unless to be ..." (a LibriVox sentence with 600 ms put in after "be"): the model calls it complete (0.96);
    its transcript ends on "be", so with turn.text_check the turn goes on to the end of the sentence."""
    from voiceos.turn.evaluate import words_of

    audio = with_pause(recording("sense_and_sensibility_01_austen_64kb-0890.wav"), 0.84, 600)
    model = TurnModel(smart_turn, TurnOptions())
    by_sound = replay(audio, model, VadOptions())
    assert by_sound.verdicts[0].complete and len(by_sound.ends) == 2  # cut after "be"
    by_words = replay(audio, model, VadOptions(), transcribe=words_of(transcriber))
    assert by_words.overruled == 1 and len(by_words.ends) == 1  # one turn: the whole sentence
    unchecked = TurnModel(smart_turn, TurnOptions(text_check=False))
    assert len(replay(audio, unchecked, VadOptions(), transcribe=words_of(transcriber)).ends) == 2


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("Go forward ten meters.", True),
        ("What is my name?", True),
        ('He said "stop!"', True),
        ("Eight of spades,", False),
        ("He might even have been.", False),  # a period after a dangling word: the tiny models close every prefix
        ("Unless to be...", False),
        ("and so my fellow Americans", False),
        ("", False),
    ],
)
def test_a_transcript_ends_a_sentence_only_with_its_punctuation_and_no_dangling_word(text, ends):
    from voiceos.turn.text import ends_sentence

    assert ends_sentence(text) is ends


def test_the_words_strategy_ends_a_turn_at_the_check_only_when_its_words_end_a_sentence(transcriber):
    """The pause's transcript decides, with no model of its own: the whole LibriVox sentence ends at the check, and
    the sentence cut after "be" (600 ms put in) goes on."""
    from voiceos.turn import WordsEndOfTurn
    from voiceos.turn.evaluate import words_of

    strategy = WordsEndOfTurn(TurnOptions(end_of_turn="words"))
    assert load_end_of_turn(TurnOptions(end_of_turn="words")).name == "words" and strategy.uses_words
    assert strategy.vad_options(VadOptions()).hangover_ms == TurnOptions().max_silence_ms
    words = words_of(transcriber)
    whole = replay(with_pause(recording(AMIABLE), AFTER_WOMAN, 0), strategy, VadOptions(), transcribe=words)
    assert [end.by for end in whole.ends] == ["model"]
    cut = with_pause(recording("sense_and_sensibility_01_austen_64kb-0890.wav"), 0.84, 600)
    assert len(replay(cut, strategy, VadOptions(), transcribe=words).ends) == 1  # one turn, not cut after "be"
    assert strategy.unfinished("")  # no transcript (none was started for the pause): the timer decides
