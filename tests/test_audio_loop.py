"""The audio loop's path for microphone audio (echo stage -> VAD -> listener), fed real read speech in uneven blocks
as PortAudio delivers it; the devices themselves are tested with the real daemon (test_daemon*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceos.config import config_from_dict
from voiceos.daemon.audio_loop import AudioLoop
from voiceos.vad import SpeechEnded, SpeechStarted, VadEvent

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech" / "librivox_cmusphinx"


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[VadEvent] = []
        self.voiced: list[float] = []
        self.states: list[tuple[str, str]] = []

    def on_speech(self, events: list[VadEvent], voiced_s: float, users_voice_s: float = 0.0) -> None:
        self.events.extend(events)
        self.voiced.append(voiced_s)

    def on_audio_state(self, state: str, detail: str = "") -> None:
        self.states.append((state, detail))


def _first_clip() -> np.ndarray:
    path = sorted((SPEECH / "audio").glob("*.wav"))[0]
    samples, rate = sf.read(str(path), dtype="float32")
    assert rate == 16000
    return samples


def _hear_in_blocks(loop: AudioLoop, samples: np.ndarray, sizes: list[int]) -> None:
    t, i = 0.0, 0
    while i < len(samples):
        block = samples[i : i + sizes[(i // 7) % len(sizes)]]
        loop.hear(block, t)  # stamped like the microphone's frames: capture time of the block's first sample
        i += len(block)
        t += len(block) / 16000


def test_speech_heard_in_uneven_blocks_reaches_the_listener_as_one_utterance_with_all_its_samples():
    config = config_from_dict({"echo": {"mode": "off"}})
    listener = RecordingListener()
    loop = AudioLoop(config, 22050, listener)
    speech = _first_clip()
    silence = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([silence, speech, silence])
    _hear_in_blocks(loop, audio, [157, 480, 1024, 33, 800])  # not multiples of the 10 ms echo frame
    kinds = [type(e) for e in listener.events if isinstance(e, SpeechStarted | SpeechEnded)]
    assert kinds == [SpeechStarted, SpeechEnded]
    utterance = next(e for e in listener.events if isinstance(e, SpeechEnded)).utterance
    assert 0.8 * len(speech) / 16000 <= utterance.duration_s <= len(speech) / 16000 + 0.6
    # every sample went through in order: the utterance is a slice of the input (echo off leaves audio unchanged)
    start = round(utterance.start_s * 16000)
    np.testing.assert_array_equal(utterance.samples, audio[start : start + len(utterance.samples)])
    assert max(listener.voiced) >= 0.5 * len(speech) / 16000
    assert loop.last_adc == pytest.approx(len(audio) // 160 * 160 / 16000)  # the end of what the echo stage took
