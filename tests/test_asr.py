"""Whisper ASR (faster-whisper, embedded tiny.en) on real recordings."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from voiceos.asr import FALLBACK_TEMPERATURES, SAMPLE_RATE, Transcriber
from voiceos.audio.files import read_audio
from voiceos.config import AsrOptions
from voiceos.errors import ModelNotFoundError
from voiceos.textnorm import normalize_words, word_error_rate

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
LIBRIVOX = SPEECH / "librivox_cmusphinx"


def _manifest() -> list[dict[str, str]]:
    with (LIBRIVOX / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_librivox_manifest_is_transcribed_close_to_its_text(transcriber):
    references, hypotheses = [], []
    for row in _manifest():
        references.append(row["transcript"])
        hypotheses.append(transcriber.transcribe(read_audio(LIBRIVOX / row["path"], SAMPLE_RATE)).text)
    corpus_wer = word_error_rate(" ".join(references), " ".join(hypotheses))
    assert corpus_wer <= 0.15, list(zip(references, hypotheses, strict=True))


def test_jfk_contains_the_famous_line(transcriber):
    transcript = transcriber.transcribe(read_audio(SPEECH / "jfk.flac", SAMPLE_RATE))
    assert "ask not what your country can do for you" in " ".join(normalize_words(transcript.text))
    assert transcript.language == "en"
    assert transcript.duration_s == pytest.approx(11.0, abs=0.1)


def test_silence_gives_an_empty_transcript(transcriber):
    assert transcriber.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32)).text == ""


def test_word_timestamps_fall_inside_the_audio(transcriber):
    samples = read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE)
    transcript = transcriber.transcribe(samples, word_timestamps=True)
    assert [w.word.strip(" .").lower() for w in transcript.words] == ["go", "forward", "10", "meters"]
    starts = [w.start_s for w in transcript.words]
    assert starts == sorted(starts) and starts[0] >= 0 and transcript.words[-1].end_s <= len(samples) / SAMPLE_RATE


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-whisper-here"):
        Transcriber.load(AsrOptions(model=str(tmp_path / "no-whisper-here")))


def test_a_named_model_goes_through_faster_whispers_download_path():
    """`small.en` is not embedded: faster-whisper's hub download is asked for it (offline here, so it says so)."""
    code = (
        "from voiceos.asr import Transcriber; from voiceos.config import AsrOptions\n"
        "Transcriber.load(AsrOptions(model='small.en'))"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "ModelNotFoundError: cannot load Whisper model 'small.en'" in last and "HF_HUB_OFFLINE" in last


class _RecordingModel:
    """The real Whisper model, recording the temperatures each transcription was allowed."""

    def __init__(self, model) -> None:
        self.model, self.temperatures = model, []

    def transcribe(self, audio, **options):
        self.temperatures.append(options["temperature"])
        return self.model.transcribe(audio, **options)


def test_temperature_fallback_is_off_by_default_and_on_when_configured(transcriber):
    import dataclasses

    audio = read_audio(LIBRIVOX / "audio" / "sense_and_sensibility_01_austen_64kb-0880.wav", SAMPLE_RATE)
    for fallback, allowed in ((False, 0.0), (True, FALLBACK_TEMPERATURES)):
        options = dataclasses.replace(transcriber.options, temperature_fallback=fallback)
        model = _RecordingModel(transcriber._model)
        text = Transcriber(model, options, transcriber.model_name).transcribe(audio).text
        assert model.temperatures == [allowed]
        assert "he was not an" in text.lower() and "young man" in text.lower()  # the clean clip either way
