"""Smart Turn v3.2: does the audio so far sound like a finished turn? (Pipecat's turn-completion model.)

The model (BSD-2-Clause, by Daily) is a Whisper-tiny encoder with a classifier over the last 8 s of 16 kHz audio,
int8 ONNX, 8.7 MB. It ships inside the ``pipecat-ai`` wheel, and voiceos reads it there in place, with the Whisper
log-mel features the model card documents (transformers' ``WhisperFeatureExtractor``, 8 s window, normalised
waveform: what Pipecat's own runner computes). Pipecat's runner itself is not imported: importing ``pipecat``
replaces ``asyncio.wait_for`` process-wide on Python < 3.12 and needs some twenty packages voiceos has no use for
(numba, openai, loguru, ...), so the lock installs the wheel without them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceos.audio.rate import SAMPLE_RATE
from voiceos.errors import ModelLoadError

log = logging.getLogger(__name__)

WINDOW_S = 8  # the model hears the last 8 s; shorter audio is padded with silence in front
DISTRIBUTION = "pipecat-ai"
MODEL_IN_WHEEL = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


class TurnModelUnavailable(ModelLoadError):
    """The turn-completion model cannot be loaded here (not installed, or it does not load)."""


def bundled_model_path() -> Path:
    """Smart Turn v3.2 inside the installed ``pipecat-ai`` wheel (found without importing ``pipecat``)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise TurnModelUnavailable(
            f"the turn model comes with the {DISTRIBUTION} package, which is not installed (Python >= 3.11 only)"
        ) from None
    path = Path(str(dist.locate_file(MODEL_IN_WHEEL)))
    if not path.is_file():
        raise TurnModelUnavailable(f"{DISTRIBUTION} {dist.version} has no {MODEL_IN_WHEEL}")
    return path


@dataclass(frozen=True)
class TurnPrediction:
    probability: float  # that the turn is complete
    ms: float  # features + inference


class SmartTurnModel:
    """One ONNX Runtime session; :meth:`predict` is blocking and thread-safe (run it off the event loop)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from transformers import WhisperFeatureExtractor

        options = ort.SessionOptions()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # a damaged or incompatible file: say which, the daemon goes on without it
            raise TurnModelUnavailable(f"{path}: the turn model does not load ({err})") from None
        self._input = self._session.get_inputs()[0].name
        self._features = WhisperFeatureExtractor(chunk_length=WINDOW_S)
        self.path = path

    @classmethod
    def load(cls, threads: int = 1) -> SmartTurnModel:
        model = cls(bundled_model_path(), threads)
        model.predict(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))  # first run allocates: not on a user's turn
        log.info("turn model: Smart Turn v3.2 from %s", model.path)
        return model

    def features(self, samples: np.ndarray) -> np.ndarray:
        """The model's input for 16 kHz float32 ``samples``: the last 8 s, silence-padded in front, as log-mel."""
        window = WINDOW_S * SAMPLE_RATE
        audio = np.asarray(samples, dtype=np.float32)[-window:]
        if len(audio) < window:
            audio = np.pad(audio, (window - len(audio), 0))
        return self._features(
            audio, sampling_rate=SAMPLE_RATE, return_tensors="np", do_normalize=True, padding="do_not_pad"
        ).input_features.astype(np.float32)

    def predict(self, samples: np.ndarray) -> TurnPrediction:
        start = time.perf_counter()
        output = self._session.run(None, {self._input: self.features(samples)})[0]
        probability = float(np.asarray(output).reshape(-1)[0])  # the graph ends in a sigmoid
        return TurnPrediction(probability, (time.perf_counter() - start) * 1000)
