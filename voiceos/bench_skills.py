"""Requests a skill answers, spoken for ``voiceos bench``: its skill turns beside the LM's turns.

The shared recordings say no such request, so the project's own voice says them (the same sentences every run).
"""

from __future__ import annotations

import numpy as np

from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import Config

REQUESTS = (
    "What time is it?",
    "What is seventeen times twenty three?",
    "What's the date today?",
    "How many minutes are in three hours?",
    "What day is it today?",
)


def skill_requests(config: Config, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` requests (cycled) as 16 kHz samples with a little silence after each."""
    from voiceos.audio.files import resample
    from voiceos.tts import load_engine
    from voiceos.tts.voices import load_voice

    voice = load_engine(load_voice(config.tts.voice, config.tts.voices_dir))
    clips = []
    for i in range(count):
        text = REQUESTS[i % len(REQUESTS)]
        audio = resample(voice.synthesize_all(text), voice.sample_rate, SAMPLE_RATE)
        clips.append((text, np.concatenate([audio, np.zeros(8000, np.float32)])))
    return clips
