"""The short chime played before a timer's or a reminder's spoken notice: two soft rising tones."""

from __future__ import annotations

import numpy as np

TONES_HZ = (880.0, 1318.5)  # A5 then E6: a rising fifth, heard as "ding-dong" rather than an alarm
TONE_S = 0.18
GAP_S = 0.04
LEVEL = 0.3  # peak amplitude: near the voice's loudness


def chime(sample_rate: int) -> np.ndarray:
    """The chime as float32 mono samples at ``sample_rate``, with a little silence after it."""
    n = int(TONE_S * sample_rate)
    t = np.arange(n) / sample_rate
    envelope = np.minimum(1.0, t / 0.01) * np.exp(-t * 9.0)  # a 10 ms attack, then a bell-like decay
    parts = []
    for hz in TONES_HZ:
        parts.append((LEVEL * envelope * np.sin(2 * np.pi * hz * t)).astype(np.float32))
        parts.append(np.zeros(int(GAP_S * sample_rate), np.float32))
    parts.append(np.zeros(int(0.15 * sample_rate), np.float32))
    return np.concatenate(parts)
