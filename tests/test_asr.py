"""Speech recognition on real recordings, both engines: Whisper (faster-whisper, embedded tiny.en) and Moonshine
(tiny-en from the moonshine-voice wheel, in onnxruntime)."""

from __future__ import annotations

import csv
import dataclasses
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from voiceos.asr import SAMPLE_RATE, Transcriber, load_transcriber
from voiceos.asr.loops import cut_repeats, loop_reason
from voiceos.asr.moonshine import read_tokenizer
from voiceos.asr.whisper import FALLBACK_TEMPERATURES, REDECODE_TEMPERATURES, WhisperTranscriber
from voiceos.audio.files import read_audio
from voiceos.config import AsrOptions
from voiceos.errors import ModelNotFoundError
from voiceos.textnorm import normalize_words, word_error_rate

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
LIBRIVOX = SPEECH / "librivox_cmusphinx"
DIGITS = SPEECH / "fsdd_dev"
SPEECHOCEAN = SPEECH / "speechocean762_train"
ENGINES = ("whisper", "moonshine")


def _manifest(folder: Path) -> list[dict[str, str]]:
    with (folder / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(params=ENGINES)
def engine(request) -> Transcriber:
    return request.getfixturevalue(f"{request.param}_transcriber")


def test_each_engine_is_what_it_says(whisper_transcriber, moonshine_transcriber):
    for asr, name in ((whisper_transcriber, "whisper"), (moonshine_transcriber, "moonshine")):
        assert isinstance(asr, Transcriber) and asr.engine == name and asr.languages == ["en"]
        assert name in asr.describe().lower() and "embedded" in asr.describe()
    assert (whisper_transcriber.model_name, moonshine_transcriber.model_name) == ("tiny.en", "tiny-en")


def test_librivox_manifest_is_transcribed_close_to_its_text(engine):
    references, hypotheses = [], []
    for row in _manifest(LIBRIVOX):
        references.append(row["transcript"])
        hypotheses.append(engine.transcribe(read_audio(LIBRIVOX / row["path"], SAMPLE_RATE)).text)
    corpus_wer = word_error_rate(" ".join(references), " ".join(hypotheses))
    assert corpus_wer <= 0.15, list(zip(references, hypotheses, strict=True))


def test_jfk_contains_the_famous_line(engine):
    transcript = engine.transcribe(read_audio(SPEECH / "jfk.flac", SAMPLE_RATE))
    assert "ask not what your country can do for you" in " ".join(normalize_words(transcript.text))
    assert transcript.language == "en"
    assert transcript.duration_s == pytest.approx(11.0, abs=0.1)


def test_silence_gives_an_empty_transcript(engine):
    assert engine.transcribe(np.zeros(SAMPLE_RATE, dtype=np.float32)).text == ""
    assert engine.transcribe(np.zeros(0, dtype=np.float32)).text == ""


def test_single_spoken_digits_come_out_as_single_words_from_the_shipped_engine(transcriber):
    """30 of the 300 spoken digits (~0.5 s each, 8 kHz, clipped onsets), picked with a fixed seed: the hardest case
    for either engine (Moonshine unbounded writes "Six, six, six, ..."). Each comes out as one or two words, and most
    are the digit said; over all 300 the shipped engine's WER is 0.38 (benchmarks/asr_wer.py), above issue #29's
    0.2: "five" heard as "Bye" and "four" as "Or" (the 8 kHz recordings lose the fricatives) are what is left."""
    rows = random.Random(0).sample(_manifest(DIGITS), 30)
    wrong = []
    for row in rows:
        text = transcriber.transcribe(read_audio(DIGITS / row["path"], SAMPLE_RATE)).text
        assert len(normalize_words(text)) <= 2, text
        if normalize_words(text) != [row["transcript"]]:
            wrong.append((row["transcript"], text))
    assert len(wrong) <= 15, wrong


# -- Moonshine ----------------------------------------------------------------------------------------------------
def test_moonshine_gives_no_word_times(moonshine_transcriber):
    samples = read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE)
    transcript = moonshine_transcriber.transcribe(samples, word_timestamps=True)
    assert not moonshine_transcriber.word_times and transcript.words == ()
    assert word_error_rate("go forward ten meters", transcript.text) == 0.0


def test_moonshine_on_a_short_word_is_bounded_by_its_length_and_padded(moonshine_transcriber):
    """A spoken "six" of 0.55 s: decoded as it is, without a bound, the model repeats it; the bound stops it, and
    the padding to asr.min_audio_s lets the model end it itself."""
    samples = read_audio(DIGITS / "audio" / "6_george_5.wav", SAMPLE_RATE)
    raw = dataclasses.replace(moonshine_transcriber.options, max_tokens_per_s=50.0, min_audio_s=0.0)
    unbounded = moonshine_transcriber.with_options(raw).transcribe(samples)
    assert unbounded.looped and unbounded.text == "Six, six,", unbounded  # (its repeats cut to two)
    bounded = moonshine_transcriber.with_options(dataclasses.replace(raw, max_tokens_per_s=6.5))
    assert len(normalize_words(bounded.transcribe(samples).text)) <= bounded.max_tokens(len(samples) / SAMPLE_RATE)
    assert normalize_words(moonshine_transcriber.transcribe(samples).text) == ["six"]


def test_the_moonshine_tokenizer_reads_length_prefixed_tokens_and_bytes(tmp_path):
    entries = [b"<unk>", b"<s>", b"</s>", b"\xc3", b"\xa9", "\u2581caf".encode()]
    path = tmp_path / "tokenizer.bin"
    path.write_bytes(b"".join(bytes([len(e)]) + e for e in entries))
    assert read_tokenizer(path) == entries


def test_a_moonshine_directory_without_its_files_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-moonshine-here"):
        load_transcriber(AsrOptions(engine="moonshine", model=str(tmp_path / "no-moonshine-here")))
    (tmp_path / "encoder_model.ort").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"lacks decoder_model_merged, tokenizer\.bin"):
        load_transcriber(AsrOptions(engine="moonshine", model=str(tmp_path)))


def test_an_unsure_moonshine_transcript_gets_whispers_second_opinion(moonshine_transcriber, whisper_transcriber):
    """asr.fallback_below: Moonshine is unsure of a child's "five five seven one" (mean log-probability below -0.2)
    and Whisper transcribes it again; of a clean LibriVox sentence it is sure, and Whisper is not asked."""
    from voiceos.asr.fallback import FallbackTranscriber

    pair = FallbackTranscriber(moonshine_transcriber, whisper_transcriber, -0.2)
    assert pair.engine == "moonshine" and "Whisper" in pair.describe() and pair.incremental
    child = read_audio(SPEECHOCEAN / LOOPING, SAMPLE_RATE)
    unsure = pair.transcribe(child)
    # Whisper's words, whatever they are on this CPU (int8 kernels differ: "five five ..." on a Xeon, "Final first
    # ever, where?" on an EPYC)
    assert unsure.second_opinion and unsure.text == whisper_transcriber.transcribe(child).text, unsure.text
    sure = pair.transcribe(read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE))
    assert not sure.second_opinion and sure.confidence is not None and sure.confidence >= -0.2
    assert not pair.transcribe_partial(read_audio(SPEECHOCEAN / LOOPING, SAMPLE_RATE)).second_opinion


def test_moonshine_hears_no_words_in_noise(moonshine_transcriber):
    """It has no "no speech" answer of its own: it writes a bare "You" for hiss or clicks and an unsure sentence for
    a mains hum; both are no words."""
    rng = np.random.default_rng(7)
    hiss = 0.01 * rng.standard_normal(3 * SAMPLE_RATE)
    hum = 0.05 * np.sin(2 * np.pi * 50 * np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE)
    click = np.concatenate([np.zeros(8000), 0.5 * np.ones(100), np.zeros(8000)])
    for noise in (hiss, hum, click, hum + hiss[: len(hum)]):
        assert moonshine_transcriber.transcribe(noise.astype(np.float32)).text == ""


def test_moonshine_is_english_only():
    from voiceos.config import config_from_dict
    from voiceos.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'asr'.*English only"):
        config_from_dict({"asr": {"engine": "moonshine", "language": "de"}})


# -- Whisper ------------------------------------------------------------------------------------------------------
def test_word_timestamps_fall_inside_the_audio(whisper_transcriber):
    samples = read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE)
    transcript = whisper_transcriber.transcribe(samples, word_timestamps=True)
    assert [w.word.strip(" .").lower() for w in transcript.words] == ["go", "forward", "10", "meters"]
    starts = [w.start_s for w in transcript.words]
    assert starts == sorted(starts) and starts[0] >= 0 and transcript.words[-1].end_s <= len(samples) / SAMPLE_RATE


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-whisper-here"):
        load_transcriber(AsrOptions(engine="whisper", model=str(tmp_path / "no-whisper-here")))


def test_a_named_model_goes_through_faster_whispers_download_path():
    """`small.en` is not embedded: faster-whisper's hub download is asked for it (offline here, so it says so)."""
    code = (
        "from voiceos.asr import load_transcriber; from voiceos.config import AsrOptions\n"
        "load_transcriber(AsrOptions(engine='whisper', model='small.en'))"
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
        self.supported_languages = model.supported_languages

    def transcribe(self, audio, **options):
        self.temperatures.append(options["temperature"])
        return self.model.transcribe(audio, **options)


def _recording(whisper: WhisperTranscriber, **options) -> tuple[WhisperTranscriber, _RecordingModel]:
    model = _RecordingModel(whisper.model)
    return WhisperTranscriber(model, dataclasses.replace(whisper.options, **options), whisper.model_name), model


def test_temperature_fallback_is_off_by_default_and_on_when_configured(whisper_transcriber):
    audio = read_audio(LIBRIVOX / "audio" / "sense_and_sensibility_01_austen_64kb-0880.wav", SAMPLE_RATE)
    for fallback, allowed in ((False, 0.0), (True, FALLBACK_TEMPERATURES)):
        asr, model = _recording(whisper_transcriber, temperature_fallback=fallback)
        text = asr.transcribe(audio).text
        assert model.temperatures == [allowed]
        assert "he was not an" in text.lower() and "young man" in text.lower()  # the clean clip either way


def test_a_looping_decode_is_decoded_again_and_only_then(whisper_transcriber):
    """A child's "five five seven one" that greedy Whisper turns into "5.5.5.5..." to its length limit: the loop
    guard decodes it again at higher temperatures and keeps the decode that does not loop; a clean clip is decoded
    once."""
    looping = read_audio(SPEECHOCEAN / LOOPING, SAMPLE_RATE)
    asr, model = _recording(whisper_transcriber, loop_guard=False)
    if not loop_reason(asr.transcribe(looping).text, len(looping) / SAMPLE_RATE):
        pytest.skip("greedy Whisper does not loop on this clip on this CPU (see the test with a looping first pass)")
    asr, model = _recording(whisper_transcriber, loop_guard=True)
    transcript = asr.transcribe(looping)
    assert transcript.looped and model.temperatures == [0.0, REDECODE_TEMPERATURES]
    assert loop_reason(transcript.text, transcript.duration_s) is None, transcript.text
    clean = read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE)
    asr, model = _recording(whisper_transcriber, loop_guard=True)
    assert not asr.transcribe(clean).looped and model.temperatures == [0.0]


class _LoopingFirstPass(_RecordingModel):
    """The real Whisper model, except that its greedy pass (temperature 0) comes back looping, as it does for some
    clips on some CPUs: the loop guard's logic, whatever this CPU's int8 kernels make of a clip."""

    def transcribe(self, audio, **options):
        if options["temperature"] == 0.0:
            self.temperatures.append(0.0)
            segment = types.SimpleNamespace(text=" 5." * 80, avg_logprob=-0.3, words=None)
            return iter([segment]), types.SimpleNamespace(language="en")
        return super().transcribe(audio, **options)


def test_a_looping_greedy_pass_is_decoded_again_at_higher_temperatures(whisper_transcriber):
    clean = read_audio(LIBRIVOX / "audio" / "goforward.wav", SAMPLE_RATE)
    model = _LoopingFirstPass(whisper_transcriber.model)
    options = dataclasses.replace(whisper_transcriber.options, loop_guard=True)
    transcript = WhisperTranscriber(model, options, whisper_transcriber.model_name).transcribe(clean)
    assert transcript.looped and model.temperatures == [0.0, REDECODE_TEMPERATURES]
    assert loop_reason(transcript.text, transcript.duration_s) is None and "forward" in transcript.text.lower()
    unguarded = dataclasses.replace(options, loop_guard=False)
    model = _LoopingFirstPass(whisper_transcriber.model)
    kept = WhisperTranscriber(model, unguarded, whisper_transcriber.model_name).transcribe(clean)
    assert not kept.looped and model.temperatures == [0.0] and loop_reason(kept.text, kept.duration_s)


LOOPING = "audio/014390045.wav"  # "five five seven one": greedy "5.5.5.5.5.5..." to its length limit


# -- loops (pure logic) -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds", "loops"),
    [
        ("5 5 5 5 5 5 5 5 5", 0.5, True),
        ("Five, five, five.", 1.5, False),
        ("No, no, no, no.", 1.5, False),
        ("Go forward 10 meters. " * 12, 2.0, True),
        ("And so my fellow Americans ask not what your country can do for you", 11.0, False),
        ("Six, six, six, six, six, six.", 0.6, True),
        ("", 1.0, False),
    ],
)
def test_a_looping_text_is_told_from_speech(text, seconds, loops):
    assert bool(loop_reason(text, seconds)) is loops


def test_cut_repeats_keeps_the_words_around_a_loop():
    assert cut_repeats("I said no no no no no no thanks") == "I said no no thanks"
    assert cut_repeats("Eight of spades, four of clubs") == "Eight of spades, four of clubs"
