"""Moonshine tiny-en (``asr.engine: moonshine``; MIT, Useful Sensors), run in onnxruntime.

The model ships inside the ``moonshine-voice`` 0.0.4 wheel as two ONNX Runtime graphs and a tokenizer
(:func:`voiceos.models.embedded_moonshine_dir`); the wheel's own native library is not used (it wants an ONNX Runtime
it does not bring). Its encoder reads the raw 16 kHz samples, with no 30 s window to fill: a call costs what the
audio's length does, which is what lets the daemon transcribe an utterance again and again while it grows.

Greedy decoding with the merged decoder's KV cache: the first step (``use_cache_branch`` false) computes the
cross-attention keys and values of the encoder's output, every later step reuses them and grows the self-attention
cache by one token. A decode is bounded by the audio's length (``asr.max_tokens_per_s``): on single short words the
model otherwise repeats itself ("Six, six, six, ..."). Clips shorter than ``asr.min_audio_s`` are padded with
silence first (measured on 300 spoken digits: benchmarks/README.md, "Moonshine beside Whisper"). A decode that
loops within its bound ("The red one, the red one, ..." for a 9 s sentence) keeps two of its repeats.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from voiceos.asr.loops import cut_repeats, loop_reason
from voiceos.asr.types import Transcript
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import AsrOptions
from voiceos.errors import ModelLoadError
from voiceos.models import EMBEDDED_MOONSHINE, MOONSHINE_FILES, AsrPlan, resolve_moonshine_model

log = logging.getLogger(__name__)

BOS, EOS = 1, 2
LAYERS, HEADS, HEAD_DIM = 6, 8, 36  # tiny: 6 decoder layers, 8 heads of 36 dimensions
EXTRA_TOKENS = 4  # on top of the length bound: a word, its punctuation and the end
SPACE = "\u2581"  # SentencePiece's word boundary
SILENT_RMS = 1e-4  # quieter audio holds no speech (about -80 dBFS): no decode at all
# The model has no "no speech" answer. On audio without words it writes a bare "You" (hiss, hum, clicks, room noise:
# 6 of 7 kinds tried) or, rarely, a whole sentence it is unsure of (a 50 Hz hum: mean log-probability -1.4); real
# speech comes with punctuation and, on 300 digits and 375 non-native recordings, a mean above -0.75.
NO_SPEECH_TEXTS = frozenset({"You"})
MIN_MEAN_LOGPROB = -1.0  # (Whisper's own log_prob_threshold)


def read_tokenizer(path: Path) -> list[bytes]:
    """``tokenizer.bin``: one entry per token id, a length byte then the token's UTF-8 bytes (single bytes for
    the byte-fallback tokens)."""
    data = path.read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = data[pos]
        tokens.append(data[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return tokens


def _session(path: Path, plan: AsrPlan):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = plan.threads
    options.inter_op_num_threads = 1
    # Idle workers sleep instead of spinning: on two cores a spinning worker takes the other core from the LM, the
    # turn model and the audio loop between decode steps.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # (onnxruntime's warnings about unused initializers are noise here)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if plan.device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def _model_file(directory: Path, stem: str) -> Path:
    return next(p for ext in (".ort", ".onnx") if (p := directory / f"{stem}{ext}").is_file())


class MoonshineTranscriber:
    """Two onnxruntime sessions (encoder, merged decoder) loaded once; :meth:`transcribe` is blocking."""

    engine = "moonshine"
    word_times = False  # the model gives no word times
    incremental = True

    def __init__(self, encoder, decoder, tokens: list[bytes], options: AsrOptions, plan: AsrPlan, name: str) -> None:
        self._encoder = encoder
        self._decoder = decoder
        self._tokens = tokens
        self.options = options
        self.plan = plan
        self.model_name = name
        self._outputs = [o.name for o in decoder.get_outputs()]
        self._last: tuple[tuple[int, int], Transcript] | None = None  # the last samples' transcript
        self._empty_cache = {
            f"past_key_values.{layer}.{part}.{kind}": np.zeros((1, HEADS, 0, HEAD_DIM), np.float32)
            for layer in range(LAYERS)
            for part in ("decoder", "encoder")
            for kind in ("key", "value")
        }

    @classmethod
    def load(cls, options: AsrOptions, plan: AsrPlan) -> MoonshineTranscriber:
        directory = resolve_moonshine_model(options.model)
        start = time.perf_counter()
        try:
            encoder, decoder = (_session(_model_file(directory, stem), plan) for stem in MOONSHINE_FILES)
            tokens = read_tokenizer(directory / "tokenizer.bin")
        except Exception as err:  # onnxruntime raises its own kinds for a corrupt or foreign file
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"cannot load Moonshine model from {directory}: {first_line}") from None
        name = EMBEDDED_MOONSHINE if options.model == "auto" else options.model
        log.info("moonshine %s loaded on %s in %.2fs", name, plan.describe(), time.perf_counter() - start)
        return cls(encoder, decoder, tokens, options, plan, name)

    def with_options(self, options: AsrOptions) -> MoonshineTranscriber:
        """The same loaded model decoding under other options (its bound, its padding)."""
        return MoonshineTranscriber(self._encoder, self._decoder, self._tokens, options, self.plan, self.model_name)

    @property
    def languages(self) -> list[str]:
        return ["en"]

    def describe(self) -> str:
        name = f"{EMBEDDED_MOONSHINE}, embedded" if self.model_name == EMBEDDED_MOONSHINE else self.model_name
        threads = f", {self.plan.threads} threads" if self.plan.threads else ""
        return f"Moonshine {name} (onnxruntime) on {self.plan.device}{threads}"

    def max_tokens(self, duration_s: float) -> int:
        """The decode's bound for ``duration_s`` of audio."""
        return math.ceil(duration_s * self.options.max_tokens_per_s) + EXTRA_TOKENS

    def transcribe(self, samples: np.ndarray, word_timestamps: bool = False) -> Transcript:
        """Transcribe 16 kHz mono float32 audio; silence gives an empty text. No word times (``word_times``). The
        same samples as the last call (a partial transcript, then the pause's) are not decoded twice."""
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        key = (len(audio), hash(audio.tobytes()))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        transcript = self._transcribe(audio)
        self._last = (key, transcript)
        return transcript

    def transcribe_partial(self, samples: np.ndarray) -> Transcript:
        return self.transcribe(samples)

    def _transcribe(self, audio: np.ndarray) -> Transcript:
        start = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        text, looped, mean_logprob = "", False, None
        if audio.size and float(np.sqrt(np.mean(audio**2))) >= SILENT_RMS:
            tokens, mean_logprob = self._generate(self._padded(audio), self.max_tokens(duration))
            text = self._detokenize(tokens)
            if text in NO_SPEECH_TEXTS or mean_logprob < MIN_MEAN_LOGPROB:
                log.debug("moonshine: no speech (%d chars, mean log-probability %.2f)", len(text), mean_logprob)
                text = ""
            if why := loop_reason(text, duration):  # (within the bound: a phrase over and over)
                log.info("moonshine: the decode looped (%s); its repeats are cut", why)
                text, looped = cut_repeats(text), True
        elapsed = (time.perf_counter() - start) * 1000
        return Transcript(text, "en", duration, (), elapsed, looped, mean_logprob)

    def _padded(self, audio: np.ndarray) -> np.ndarray:
        short = int(self.options.min_audio_s * SAMPLE_RATE) - len(audio)
        return np.concatenate([audio, np.zeros(short, np.float32)]) if short > 0 else audio

    def _generate(self, audio: np.ndarray, max_tokens: int) -> tuple[list[int], float]:
        """Greedy tokens (without BOS and EOS) and their mean log-probability (the end's included)."""
        inputs = audio[None, :]
        mask = np.ones(inputs.shape, dtype=np.int64)  # over the samples: the graphs downsample it themselves
        hidden = self._encoder.run(None, {"input_values": inputs, "attention_mask": mask})[0]
        cache = dict(self._empty_cache)
        feed = {"encoder_hidden_states": hidden, "encoder_attention_mask": mask}
        tokens: list[int] = []
        logprob = 0.0
        last = BOS
        for step in range(max_tokens):
            results = self._decoder.run(
                None,
                {
                    **feed,
                    **cache,
                    "input_ids": np.array([[last]], dtype=np.int64),
                    "use_cache_branch": np.array([step > 0]),
                },
            )
            logits = results[0][0, -1]
            last = int(logits.argmax())
            top = float(logits[last])
            logprob += -float(np.log(np.exp(logits - top).sum()))  # log-softmax of the chosen token
            if last == EOS:
                break
            tokens.append(last)
            for name, value in zip(self._outputs[1:], results[1:], strict=True):
                if step == 0 or ".decoder." in name:  # the encoder's keys and values come from the first step only
                    cache[name.replace("present", "past_key_values", 1)] = value
        return tokens, logprob / max(1, step + 1)

    def _detokenize(self, ids: list[int]) -> str:
        raw = b"".join(self._tokens[i] for i in ids if i > EOS and i < len(self._tokens))
        return raw.decode("utf-8", errors="replace").replace(SPACE, " ").strip()

    def warm(self) -> None:
        """One decode of a second of quiet noise, so the first utterance does not pay for lazy initialisation."""
        noise = np.random.default_rng(0).normal(0.0, 0.01, SAMPLE_RATE).astype(np.float32)
        self._generate(noise, 2)
