"""Microphone capture through a real PortAudio stream on the virtual microphone (the pulse_server fixture)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.audio.microphone import STALL_S, Microphone, rescan_devices

JFK = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "jfk.flac"


async def capture(seconds: float, during=None) -> tuple[list[np.ndarray], list[float], Microphone]:
    mic = Microphone(None)  # the default input: vmic
    chunks, times = [], []
    loop = asyncio.get_running_loop()
    task = loop.run_in_executor(None, during) if during else None
    end = time.monotonic() + seconds
    async for samples, at in mic.frames():
        chunks.append(samples)
        times.append(at)
        if time.monotonic() > end:
            break
    if task:
        await task
    mic.close()
    return chunks, times, mic


def test_speech_spoken_into_the_microphone_arrives_at_16_khz(pulse_server, transcriber):
    speech = read_audio(JFK, SAMPLE_RATE)
    chunks, _, mic = asyncio.run(capture(13.0, lambda: pulse_server.speak_into_mic(speech)))
    heard = np.concatenate(chunks)
    assert mic.sample_rate != SAMPLE_RATE  # the device's own rate, resampled by us
    assert mic.dropped_blocks == 0
    assert "ask not what your country can do for you" in transcriber.transcribe(heard).text.lower().replace(",", "")


def test_chunk_times_follow_the_sample_count_not_the_resamplers_chunking(pulse_server):
    chunks, times, _ = asyncio.run(capture(2.0))
    assert len(chunks) > 20
    for (chunk, start), next_start in zip(zip(chunks, times, strict=False), times[1:], strict=False):
        assert abs(next_start - (start + len(chunk) / SAMPLE_RATE)) < 0.002


def test_a_dead_sound_server_shows_as_a_stalled_stream(pulse_server):
    async def run() -> bool:
        mic = Microphone(None)
        await asyncio.sleep(0.5)
        assert not mic.stalled()
        pulse_server.kill()
        await asyncio.sleep(STALL_S + 0.5)
        stalled = mic.stalled()
        mic.close()
        return stalled

    try:
        assert asyncio.run(run())
    finally:
        pulse_server.start()
        rescan_devices()
