"""`voiceos wyoming`: a real Wyoming server on 127.0.0.1 over the session's real models, driven by wyoming's client.

The server runs on its own event loop in a background thread; each test talks to it with
``wyoming.client.AsyncTcpClient`` (or a bare socket, for bytes no client would send) under ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, Eventable, async_read_event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from voiceos.audio.files import read_audio
from voiceos.pipeline import Pipeline
from voiceos.textnorm import word_error_rate
from voiceos.wyoming import DEFAULT_URI, WyomingServer, exposure_warning
from voiceos.wyoming.audio import AudioInput
from voiceos.wyoming.stream import MAX_READ_BYTES

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx"
RECORDING = "audio/sense_and_sensibility_01_austen_64kb-0930.wav"  # "he might even have been made amiable himself"
SENTENCES = "The garden is quiet in the early morning. Birds sing in the old oak tree."
READ_TIMEOUT = 300.0  # a safety net for a hung server, not a measurement
ANSWERS = ("info", "transcript", "handled", "audio-stop", "error", "pong")


# -- the server and its clients -------------------------------------------------------------------------------------
class ServerThread:
    """A WyomingServer on a free port of 127.0.0.1, on its own event loop in a daemon thread."""

    def __init__(self, pipeline: Pipeline) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = WyomingServer(pipeline, f"tcp://127.0.0.1:{self.port}")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self.server.start())

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(pipeline):
    running = ServerThread(pipeline)
    yield running
    running.stop()


def client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, read_timeout=READ_TIMEOUT)


async def send(connection: AsyncTcpClient, *events: Eventable | Event) -> None:
    for event in events:
        await connection.write_event(event if isinstance(event, Event) else event.event())


async def answer(connection: AsyncTcpClient) -> list[Event]:
    """Events up to and including the one that ends an answer (info, transcript, handled, audio-stop, error)."""
    events: list[Event] = []
    while True:
        event = await connection.read_event()
        assert event is not None, f"connection closed after {[e.type for e in events]}"
        events.append(event)
        if event.type in ANSWERS:
            return events


async def ask(port: int, *events: Eventable | Event) -> list[Event]:
    async with client(port) as connection:
        await send(connection, *events)
        return await answer(connection)


def run(coro):
    return asyncio.run(coro)


def speech(events: list[Event]) -> tuple[np.ndarray, int]:
    """The audio of a synthesize answer (audio-start, audio-chunk..., audio-stop) as float32, and its rate."""
    assert events[0].type == "audio-start" and events[-1].type == "audio-stop", [e.type for e in events]
    start = AudioStart.from_event(events[0])
    assert (start.width, start.channels) == (2, 1)
    pcm = b"".join(AudioChunk.from_event(e).audio for e in events if e.type == "audio-chunk")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, start.rate


def audio_events(samples: np.ndarray, rate: int, channels: int = 1, chunk_s: float = 0.1) -> list[Eventable]:
    """audio-start, 16-bit chunks of ``chunk_s`` seconds, audio-stop: float32 mono duplicated to ``channels``."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    frames = np.repeat(pcm[:, None], channels, axis=1).tobytes()
    step = round(rate * chunk_s) * 2 * channels
    chunks = [AudioChunk(rate, 2, channels, frames[i : i + step]) for i in range(0, len(frames), step)]
    return [AudioStart(rate, 2, channels), *chunks, AudioStop()]


def manifest_text(path: str) -> str:
    with (LIBRIVOX / "manifest.csv").open(newline="") as f:
        return next(row["transcript"] for row in csv.DictReader(f) if row["path"] == path)


def synthesize(text: str, speaker: str | None = None, voice: str = "joe") -> Synthesize:
    return Synthesize(text=text, voice=SynthesizeVoice(name=voice, speaker=speaker))


def error_text(events: list[Event]) -> str:
    assert events[-1].type == "error", [e.type for e in events]
    return events[-1].data["text"]


# -- what it offers -------------------------------------------------------------------------------------------------
def test_describe_lists_the_asr_engine_each_voice_with_its_emotions_and_the_persona(server, pipeline):
    events = run(ask(server.port, Describe()))
    info = Info.from_event(events[-1])
    (asr,) = info.asr
    engine = pipeline.transcriber
    assert asr.name == f"voiceos-{engine.engine}" and engine.engine.capitalize() in asr.description
    assert [(m.name, m.languages) for m in asr.models] == [(engine.model_name, ["en"])]
    assert asr.models[0].description == engine.describe()
    (tts,) = info.tts
    joe = next(v for v in tts.voices if v.name == "joe")
    assert [s.name for s in joe.speakers] == pipeline.voice.emotion_names
    assert {"neutral", "excited", "calm"} <= set(pipeline.voice.emotion_names)
    assert joe.languages == ["en_US"]
    (handle,) = info.handle
    assert "Milo" in handle.description and "remembers 0 fact(s)" in handle.description
    assert handle.models[0].name == "SmolLM2-135M-Instruct"


def test_whisper_left_to_detect_the_language_offers_every_language_its_model_knows(pipeline):
    from voiceos.wyoming.info import asr_languages

    auto = dataclasses.replace(pipeline.config, asr=dataclasses.replace(pipeline.config.asr, language=None))
    models = {k: getattr(pipeline, k) for k in ("transcriber", "lm", "tts", "voice")}
    assert asr_languages(Pipeline(auto, pipeline.plan, **models)) == ["en"]  # tiny.en knows English only
    assert asr_languages(pipeline) == ["en"]  # asr.language: en


# -- speech to text -------------------------------------------------------------------------------------------------
def test_a_recording_sent_as_44k_stereo_is_transcribed_close_to_its_text(server):
    samples = read_audio(LIBRIVOX / RECORDING, 44100)
    events = run(ask(server.port, Transcribe(language="en"), *audio_events(samples, 44100, channels=2)))
    transcript = Transcript.from_event(events[-1])
    assert word_error_rate(manifest_text(RECORDING), transcript.text) <= 0.2, transcript.text
    assert transcript.language == "en"


def test_audio_input_converts_any_rate_width_and_channel_count_to_16k_mono():
    rate, seconds = 48000, 0.5
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
    frames = np.repeat((tone * 2**31).astype("<i4")[:, None], 3, axis=1)  # 32-bit, three channels
    audio = AudioInput(max_seconds=5)
    for part in np.array_split(frames, 7):
        audio.add(AudioChunk(rate, 4, 3, part.tobytes()))
    out = audio.samples()
    assert abs(len(out) - 16000 * seconds) <= 16
    assert 0.45 < np.abs(out).max() < 0.55
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 440) < 5


def test_audio_past_the_cap_is_an_error_and_the_next_request_is_served(server):
    second = np.zeros(16000, dtype=np.float32)
    too_long = [AudioChunk(16000, 2, 1, np.zeros(16000, dtype="<i2").tobytes()) for _ in range(61)]
    samples = read_audio(LIBRIVOX / RECORDING, 16000)

    async def main():
        async with client(server.port) as connection:
            await send(connection, Transcribe(), AudioStart(16000, 2, 1), *too_long)
            refused = await answer(connection)
            await send(connection, AudioStop())  # the rest of the dropped request: nothing comes back for it
            await send(connection, Transcribe(), *audio_events(np.concatenate([second, samples]), 16000))
            return refused, await answer(connection)

    refused, served = run(main())
    assert "longer than 60 s" in error_text(refused) and refused[-1].data["code"] == "audio-too-long"
    assert word_error_rate(manifest_text(RECORDING), Transcript.from_event(served[-1]).text) <= 0.2


# -- text to speech -------------------------------------------------------------------------------------------------
def test_a_synthesized_sentence_streams_per_sentence_and_transcribes_back(server):
    events = run(ask(server.port, synthesize(SENTENCES)))
    audio, rate = speech(events)
    assert rate == 22050 and len(audio) / rate > 2.0
    chunks = [AudioChunk.from_event(e) for e in events if e.type == "audio-chunk"]
    assert all(c.samples <= round(rate * 0.1) for c in chunks) and len(chunks) > 20
    heard = run(ask(server.port, Transcribe(), *audio_events(audio, rate)))  # sent back at 22050 Hz, as it came
    # a round trip through the voice and the default ASR (Moonshine tiny-en): 4 of 15 words were heard wrong once
    assert word_error_rate(SENTENCES, Transcript.from_event(heard[-1]).text) <= 0.34


def test_an_emotion_speaker_changes_the_voice_from_neutral(server):
    neutral, _ = speech(run(ask(server.port, synthesize(SENTENCES, "neutral"))))
    gentle, _ = speech(run(ask(server.port, synthesize(SENTENCES, "gentle"))))
    # joe.yaml: gentle is 4 dB quieter (Piper scales each sentence's peak) and 10 % slower
    assert np.abs(gentle).max() < 0.8 * np.abs(neutral).max()
    assert len(gentle) > len(neutral)


def test_an_unknown_voice_or_speaker_is_an_error_and_the_connection_keeps_working(server):
    async def main():
        async with client(server.port) as connection:
            await send(connection, synthesize("Hello there.", voice="nobody"))
            no_voice = await answer(connection)
            await send(connection, synthesize("Hello there.", speaker="furious"))
            no_speaker = await answer(connection)
            await send(connection, synthesize("Hello there.", speaker="excited"))
            return no_voice, no_speaker, await answer(connection)

    no_voice, no_speaker, spoken = run(main())
    assert "unknown voice 'nobody'" in error_text(no_voice) and "joe" in error_text(no_voice)
    assert "'furious'" in error_text(no_speaker) and "excited" in error_text(no_speaker)
    assert no_voice[-1].data["code"] == no_speaker[-1].data["code"] == "unknown-voice"
    assert len(speech(spoken)[0]) > 0


def test_another_voice_from_the_voices_dir_is_loaded_on_first_use(pipeline, tmp_path):
    joe = (Path(__file__).resolve().parents[1] / "voices" / "joe.yaml").read_text()
    (tmp_path / "joe.yaml").write_text(joe)
    slow = joe.replace("name: joe ", "name: slowjoe ").replace("length_scale: 1.0", "length_scale: 1.6")
    (tmp_path / "slowjoe.yaml").write_text(slow)
    config = pipeline.config
    config = dataclasses.replace(config, tts=dataclasses.replace(config.tts, voices_dir=str(tmp_path)))
    models = {k: getattr(pipeline, k) for k in ("transcriber", "lm", "tts", "voice")}
    running = ServerThread(Pipeline(config, pipeline.plan, **models))
    try:
        info = Info.from_event(run(ask(running.port, Describe()))[-1])
        assert sorted(v.name for v in info.tts[0].voices) == ["joe", "slowjoe"]
        normal, _ = speech(run(ask(running.port, synthesize(SENTENCES))))
        slow, _ = speech(run(ask(running.port, synthesize(SENTENCES, voice="slowjoe"))))
    finally:
        running.stop()
    assert len(slow) > 1.3 * len(normal)


# -- conversation ---------------------------------------------------------------------------------------------------
def test_a_conversation_turn_is_handled_with_the_user_and_reply_emotions(server, pipeline):
    events = run(ask(server.port, Transcript(text="Hi, my name is Maya. I just got a puppy and I am so happy!")))
    assert events[-1].type == "handled", events[-1]
    reply, context = events[-1].data["text"], events[-1].data["context"]
    assert reply.strip()
    assert context["user_emotion"]["label"] in {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert set(context["user_emotion"]["scores"]) >= {"joy", "neutral"}
    assert context["reply_emotion"] in pipeline.voice.emotion_names
    assert [m["role"] for m in pipeline.history] == ["user", "assistant"] and pipeline.history[1]["content"] == reply
    assert any("Maya" in fact.text for fact in pipeline.memory.facts)
    # speaking that reply without naming a speaker uses the emotion the conversation chose for it
    assert server.server.service.reply_emotion(reply) == context["reply_emotion"]
    assert speech(run(ask(server.port, Synthesize(text=reply))))[0].size > 0


# -- bad clients ----------------------------------------------------------------------------------------------------
async def raw(port: int, data: bytes, *, half_close: bool = False) -> list[Event | None]:
    """Send bytes no client library would, then read events until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if half_close:
        writer.write_eof()
    await writer.drain()
    events: list[Event | None] = []
    while (event := await asyncio.wait_for(async_read_event(reader), READ_TIMEOUT)) is not None:
        events.append(event)
        if not half_close and event.type == "info":
            break
    writer.close()
    return events


def assert_still_serving(port: int) -> None:
    assert run(ask(port, Describe()))[-1].type == "info"


def test_malformed_json_gets_an_error_and_the_connection_keeps_working(server):
    describe = b'{"type": "describe"}\n'
    events = run(raw(server.port, b"{this is not json\n" + b'["a list"]\n' + describe))
    assert [e.type for e in events] == ["error", "error", "info"]
    assert "not JSON" in events[0].data["text"] and '"type" string' in events[1].data["text"]
    assert_still_serving(server.port)


def test_a_truncated_event_is_an_error_then_the_connection_closes_and_the_server_keeps_serving(server):
    header = b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, "payload_length": 3200}\n'
    events = run(raw(server.port, header + bytes(100), half_close=True))
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == "truncated"
    assert "100 of 3200 bytes" in events[0].data["text"]
    assert_still_serving(server.port)


def test_an_oversized_payload_is_refused_and_the_server_keeps_serving(server):
    size = MAX_READ_BYTES + 1
    header = {"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, "payload_length": size}
    events = run(raw(server.port, json.dumps(header).encode() + b"\n"))
    assert [e.type for e in events] == ["error"] and events[0].data["code"] == "too-large"
    assert str(size) in events[0].data["text"]
    long_line = run(raw(server.port, b'{"type": "' + b"x" * 70_000 + b'"}\n'))
    assert [e.type for e in long_line] == ["error"] and "header longer than" in long_line[0].data["text"]
    assert_still_serving(server.port)


def test_a_client_vanishing_mid_stream_changes_nothing_for_the_next(server, caplog):
    story = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 9))
    samples = read_audio(LIBRIVOX / RECORDING, 16000)

    async def vanish_mid_synthesis():
        async with client(server.port) as connection:
            await send(connection, synthesize(story))
            while (await connection.read_event()).type != "audio-chunk":
                pass
        # gone: the server finds out when it writes the next chunks

    async def vanish_mid_upload():
        async with client(server.port) as connection:
            await send(connection, *audio_events(samples, 16000)[:10])

    with caplog.at_level(logging.INFO, logger="voiceos.wyoming"):
        run(vanish_mid_synthesis())
        run(vanish_mid_upload())
        heard = run(ask(server.port, Transcribe(), *audio_events(samples, 16000)))
        spoken, _ = speech(run(ask(server.port, synthesize("Still here."))))
    assert word_error_rate(manifest_text(RECORDING), Transcript.from_event(heard[-1]).text) <= 0.2
    assert len(spoken) > 0
    assert "untranscribed" in caplog.text


def test_two_clients_at_once_are_both_served_and_neither_waits_for_the_others_whole_answer(server):
    story = " ".join(f"This is sentence number {n} of a long story." for n in range(1, 7))
    samples = read_audio(LIBRIVOX / RECORDING, 44100)
    order: list[str] = []

    async def long_reader():
        async with client(server.port) as connection:
            await send(connection, synthesize(story))
            events = []
            while True:
                events.append(await connection.read_event())
                if events[-1].type == "audio-chunk" and len(events) == 2:
                    order.append("story started")
                    other.set()
                if events[-1].type == "audio-stop":
                    order.append("story finished")
                    return events

    async def listener():
        await other.wait()
        events = await ask(server.port, Transcribe(), *audio_events(samples, 44100))
        order.append("transcript")
        return events

    async def main():
        return await asyncio.gather(long_reader(), listener())

    other = asyncio.Event()
    story_events, heard = run(main())
    assert order == ["story started", "transcript", "story finished"]
    assert word_error_rate(manifest_text(RECORDING), Transcript.from_event(heard[-1]).text) <= 0.2
    assert word_error_rate(story, run(transcribe_back(server.port, story_events))) <= 0.25


async def transcribe_back(port: int, events: list[Event]) -> str:
    audio, rate = speech(events)
    return Transcript.from_event((await ask(port, Transcribe(), *audio_events(audio, rate)))[-1]).text


# -- listening address and the command ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "warned"),
    [
        ("tcp://127.0.0.1:10700", False),
        ("tcp://localhost:10700", False),
        ("tcp://[::1]:10700", False),
        ("unix:///run/user/1000/voiceos/wyoming.sock", False),
        ("tcp://0.0.0.0:10700", True),
        ("tcp://192.168.1.20:10700", True),
        ("tcp://voiceos.lan:10700", True),
    ],
)
def test_a_non_loopback_address_warns_that_wyoming_has_no_authentication(uri, warned):
    warning = exposure_warning(uri)
    assert (warning is not None) == warned
    if warned:
        assert "no authentication" in warning


def test_the_wyoming_command_serves_until_sigterm(no_sound_env, transcriber):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "voiceos", "wyoming", "--uri", f"tcp://127.0.0.1:{port}"],
        env=no_sound_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + READ_TIMEOUT
        while True:  # the models load first (a few seconds to a minute), then it listens
            assert proc.poll() is None, proc.communicate()[1]
            try:
                info = run(ask(port, Describe()))[-1]
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.5)
        assert info.type == "info" and Info.from_event(info).handle
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    serving = f"tts (joe), conversation (Milo) on tcp://127.0.0.1:{port}"
    assert f"serving asr ({transcriber.describe()}), {serving}" in stderr
    assert "no authentication" not in stderr


def test_the_command_refuses_a_bad_uri_before_loading_models(no_sound_env):
    proc = subprocess.run(
        [sys.executable, "-m", "voiceos", "wyoming", "--uri", "http://0.0.0.0:10700"],
        env=no_sound_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("voiceos: error: --uri 'http://0.0.0.0:10700'")
    from voiceos.cli import build_parser

    assert build_parser().parse_args(["wyoming"]).uri == DEFAULT_URI
