"""The live daemon with its default end of turn, the turn-completion model: real recordings spoken into the virtual
microphone. (tests/test_daemon.py pins the silence timer, whose hangover its tests are about.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from daemon_process import running_daemon

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.textnorm import word_error_rate

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"
SENTENCE = "had he married a more amiable woman he might have been made still more respectable than he was"
AFTER_WOMAN = 2.62  # s into the recording: tests/test_end_of_turn.py replays the same cut


@pytest.fixture(scope="module")
def daemon(pulse_server, xdg_cache_home, tmp_path_factory):
    with running_daemon(pulse_server, xdg_cache_home, tmp_path_factory.mktemp("turn-daemon")) as proc:
        yield proc


def sentence() -> np.ndarray:
    return read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0920.wav", SAMPLE_RATE)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_the_daemon_uses_the_turn_model_by_default(daemon):
    assert daemon.client.request("status")["end_of_turn"] == "smart_turn"


def test_a_complete_sentence_ends_the_turn_at_the_models_verdict_and_is_answered(daemon, pulse_server):
    daemon.client.request("reset")
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(np.concatenate([sentence(), silence(1.5)]))
    ended = daemon.events.wait_for("speaking_ended", mark)
    daemon.wait_until("listening", timeout=30)

    names = [e["event"] for e in daemon.events.since(mark)]
    verdicts = daemon.events.since(mark, "turn_verdict")
    assert verdicts and verdicts[-1]["complete"] and verdicts[-1]["ended_turn"], verdicts
    assert names.index("turn_verdict") < names.index("speech_ended") < names.index("speaking_started"), names
    assert names.count("speech_ended") == 1 and not ended["interrupted"] and ended["spoken_text"]
    assert word_error_rate(SENTENCE, daemon.events.since(mark, "transcript")[0]["text"]) <= 0.3


def test_a_pause_in_the_middle_of_a_sentence_does_not_end_the_turn(daemon, pulse_server):
    """600 ms after "had he married a more amiable woman": longer than the silence timer's 500 ms hangover, so
    without the model the sentence would be cut in two and half of it answered."""
    cut = int(AFTER_WOMAN * SAMPLE_RATE)
    audio = sentence()
    daemon.client.request("reset")
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(np.concatenate([audio[:cut], silence(0.6), audio[cut:], silence(1.5)]))
    ended = daemon.events.wait_for("speaking_ended", mark)
    daemon.wait_until("listening", timeout=30)

    names = [e["event"] for e in daemon.events.since(mark)]
    verdicts = daemon.events.since(mark, "turn_verdict")
    assert not verdicts[0]["complete"] and not verdicts[0]["ended_turn"], verdicts  # the pause in the middle
    assert names.count("speech_ended") == 1 and names.count("transcript") == 1, names
    assert names.count("speaking_started") == 1 and not ended["interrupted"], names
    assert word_error_rate(SENTENCE, daemon.events.since(mark, "transcript")[0]["text"]) <= 0.3
    assert daemon.client.request("status")["history_messages"] == 2


def test_the_words_come_while_the_user_speaks_and_the_turn_is_answered_from_the_final_ones(daemon, pulse_server):
    """asr.partial_ms: the utterance so far is transcribed as it grows (the shipped engine's cost grows with the
    audio): partial_transcript events before the end of the speech, the last of them the words said so far."""
    if daemon.client.request("status")["models"]["asr"].split()[0] != "Moonshine":
        pytest.skip("partial transcripts come from engines whose cost grows with the audio (Moonshine)")
    daemon.client.request("reset")
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(np.concatenate([sentence(), silence(1.5)]))
    daemon.events.wait_for("speaking_ended", mark)
    daemon.wait_until("listening", timeout=30)

    events = daemon.events.since(mark)
    names = [e["event"] for e in events]
    partials = [e for e in events if e["event"] == "partial_transcript"]
    assert len(partials) >= 2, names  # a 6 s sentence, every 400 ms of talking while the models were free
    assert names.index("partial_transcript") < names.index("speech_ended")
    said, last = SENTENCE.split(), partials[-1]["text"]  # (the first ones may end inside a word)
    assert word_error_rate(" ".join(said[: len(last.split())]), last) <= 0.5, [p["text"] for p in partials]
    assert [p["stream_s"] for p in partials] == sorted(p["stream_s"] for p in partials)
    assert word_error_rate(SENTENCE, daemon.events.since(mark, "transcript")[0]["text"]) <= 0.3
