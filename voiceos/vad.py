"""Voice activity endpointer: audio in, speech events out (pure logic, no I/O).

:class:`VadSegmenter` cuts a stream into utterances with webrtcvad, the way the classic ``py-webrtcvad`` example
does: each ``frame_ms`` frame is classified voiced/unvoiced; speech *starts* once voiced frames cover ``start_ms``
within a short ring-buffer window, and *ends* after ``hangover_ms`` of continuous unvoiced frames.

Conventions (all times in seconds from the first sample fed since construction, :meth:`reset` or :meth:`flush`):

- ``SpeechStarted.time_s`` is the speech onset: the start of the first voiced frame of the window that triggered.
  It is emitted when the trigger fires, i.e. up to a window later than ``time_s``.
- webrtcvad calls the first ~100 ms of any non-silent stream speech while its noise model settles; those
  decisions are ignored (``WARMUP_MS``). Speech that starts right away is still caught a little later, and the
  pre-roll brings its beginning back.
- An utterance begins up to ``pre_roll_ms`` before the onset (never before the stream start or the previous
  utterance's last voiced frame), so soft onsets the VAD missed are kept.
- The end of speech is the last *loud* voiced frame: voiced, and within ``end_level_db`` of the utterance's speech
  level (the 90th percentile of its voiced frames' energy). webrtcvad keeps calling a word's fading tail, breath
  and steady room noise voice, for 0.1-0.4 s (more after resampling), and the hangover would start only after it.
  The hangover counts from the last loud frame.
- An utterance ends at the end of its last voiced frame no more than ``TAIL_MS`` after its last loud one, so a soft
  word ending stays in; the hangover audio is *not* included. Those frames are all heard by the time of the pause
  (``SpeechPaused`` waits at least ``TAIL_MS``), so the pause's samples are the end's.
- With ``grow_ms`` (words while the user speaks, ``asr.partial_ms``), :class:`SpeechGrowing` comes every that much
  utterance time while the user is talking, with the utterance so far, for a partial transcript.
- With ``check_ms`` (an end-of-turn strategy, voiceos.turn), :class:`TurnCheck` comes after that much silence:
  the strategy's verdict may end the turn there (:meth:`VadSegmenter.end_turn`) before the hangover does.
- An utterance with less than ``min_speech_ms`` of voiced frames is dropped: :class:`SpeechDiscarded` replaces
  :class:`SpeechEnded` so a listener can undo whatever it did on :class:`SpeechStarted`.
- An utterance reaching ``max_utterance_s`` (pre-roll included) is force-ended (``SpeechEnded.forced``). If the
  speaker is still talking, a new utterance starts with the very next frame (a new :class:`SpeechStarted`), so no
  audio is lost or duplicated between the two.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import webrtcvad

from voiceos.config import VadOptions

log = logging.getLogger(__name__)

WARMUP_MS = 150  # webrtcvad reports 60-120 ms of "speech" at the start of any noisy stream (measured)
TAIL_MS = 90  # quieter voiced audio kept after the last loud frame (a soft final consonant)
LEVEL_PERCENTILE = 0.9  # the utterance's speech level: this percentile of its voiced frames' energy

__all__ = [
    "SpeechDiscarded",
    "SpeechEnded",
    "SpeechGrowing",
    "SpeechStarted",
    "TurnCheck",
    "Utterance",
    "VadEvent",
    "VadSegmenter",
    "segment",
]


@dataclass(frozen=True)
class Utterance:
    """One stretch of speech; ``samples`` is float32 mono at the segmenter's sample rate, pre-roll included.

    Equality compares the times only (numpy arrays have no single truth value).
    """

    start_s: float
    end_s: float
    samples: np.ndarray = field(repr=False, compare=False)
    voiced_s: float = field(default=0.0, compare=False)  # how much of it the VAD called voice

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class SpeechStarted:
    time_s: float


@dataclass(frozen=True)
class SpeechEnded:
    utterance: Utterance
    forced: bool = False  # cut at max_utterance_s rather than by a pause


@dataclass(frozen=True)
class SpeechPaused:
    """Silence has lasted ``speculate_ms`` inside an utterance: if the turn ends at this pause, ``utterance`` is
    exactly what :class:`SpeechEnded` will carry (same samples), so work on it may start now and be kept then."""

    utterance: Utterance


@dataclass(frozen=True)
class SpeechGrowing:
    """The user is still talking: ``utterance`` is what they said so far (to the last voiced frame), for a partial
    transcript. Its samples are not those of the end (more will come)."""

    utterance: Utterance


@dataclass(frozen=True)
class TurnCheck:
    """Silence has lasted ``check_ms``: is the turn complete? ``audio`` is all of the open utterance heard so far,
    the pause included (what a turn-completion model hears); ``utterance`` is what :class:`SpeechEnded` carries if
    :meth:`VadSegmenter.end_turn` ends the turn at this pause (the samples of :class:`SpeechPaused`)."""

    utterance: Utterance
    audio: np.ndarray = field(repr=False, compare=False)

    @property
    def span(self) -> tuple[float, float]:
        return (self.utterance.start_s, self.utterance.end_s)


@dataclass(frozen=True)
class SpeechDiscarded:
    """A started utterance turned out too short (a click, a cough): undo what ``SpeechStarted`` began."""

    start_s: float
    end_s: float


VadEvent = SpeechStarted | SpeechGrowing | SpeechPaused | TurnCheck | SpeechEnded | SpeechDiscarded


def _as_float_and_pcm(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float32 in [-1, 1] plus the int16 webrtcvad needs; int16 x and float x/32768 give identical results."""
    arr = np.asarray(samples)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"VAD needs mono audio (a 1-D array), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / np.float32(32768.0), arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"VAD needs float or int16 samples, got {arr.dtype}")
    flt = np.clip(np.nan_to_num(arr.astype(np.float32, copy=False)), -1.0, 1.0)
    pcm = np.clip(np.round(flt * np.float32(32768.0)), -32768, 32767).astype(np.int16)
    return flt, pcm


class VadSegmenter:
    """Incremental endpointer; feed any chunk sizes, get the same events as feeding everything at once."""

    def __init__(self, options: VadOptions | None = None, *, check_ms: int = 0, grow_ms: int = 0) -> None:
        self.options = options or VadOptions()
        self.check_ms = check_ms
        self.grow_ms = grow_ms
        o = self.options
        self._frame_len = o.sample_rate * o.frame_ms // 1000
        # Trigger: `need` voiced frames (covering start_ms, at least one) within a window twice that long.
        self._need = max(1, math.ceil(o.start_ms / o.frame_ms))
        self._window = 2 * self._need
        self._pre_roll = math.ceil(o.pre_roll_ms / o.frame_ms)
        self._hangover = math.ceil(o.hangover_ms / o.frame_ms)
        self._tail = math.ceil(TAIL_MS / o.frame_ms) if o.end_level_db else 0
        # 0: never; else not before the tail is complete (the samples must be the end's)
        self._speculate = max(math.ceil(o.speculate_ms / o.frame_ms), self._tail) if o.speculate_ms else 0
        self._min_voiced = math.ceil(o.min_speech_ms / o.frame_ms)
        # 0: never; else not before the tail is complete, and before the hangover ends the turn anyway
        self._check = max(math.ceil(check_ms / o.frame_ms), self._tail) if check_ms else 0
        self._max_frames = max(self._window + 1, int(o.max_utterance_s * 1000 // o.frame_ms))
        self._grow = math.ceil(grow_ms / o.frame_ms) if grow_ms else 0  # 0: never
        self._warmup = math.ceil(WARMUP_MS / o.frame_ms)
        self.reset()

    def reset(self) -> None:
        """Forget everything, including an open utterance (no event); times restart at 0."""
        self._vad = webrtcvad.Vad(self.options.aggressiveness)
        self._pend_f = np.zeros(0, np.float32)
        self._pend_i = np.zeros(0, np.int16)
        self._pend_h = np.zeros(0, np.float32)
        self._index = 0  # index of the next frame
        self._ring: deque[bool] = deque(maxlen=self._window)
        self._history: deque[np.ndarray] = deque(maxlen=self._pre_roll + self._window)
        self._triggered = False
        self._utt: list[np.ndarray] = []
        self._utt_start = 0  # frame index of the first frame in _utt
        self._last_voiced = -1
        self._last_loud = -1
        self._levels: list[float] = []  # the open utterance's voiced frames' energy (dB), sorted
        self._voiced = 0
        self._silence_run = 0  # frames since the last loud voiced frame
        self._grown_at = 0  # the frame index of the last SpeechGrowing (or of the start)

    def feed(self, samples: np.ndarray, heard: np.ndarray | None = None) -> list[VadEvent]:
        """Add audio (float32 in [-1, 1] or int16, mono, any length); returns the events it completed.

        ``heard`` (float32, as long as ``samples``) is what utterances keep instead of ``samples``, which then only
        decide where speech is: the echo stage hides its echo from the VAD behind room noise, but the words' onset
        in those frames (a quiet "s" under a chime) belongs to the utterance the ASR hears."""
        flt, pcm = _as_float_and_pcm(samples)
        kept = flt if heard is None else np.asarray(heard, dtype=np.float32)
        if len(kept) != len(flt):
            raise ValueError(f"heard has {len(kept)} samples, the audio {len(flt)}")
        if self._pend_f.size:
            flt = np.concatenate([self._pend_f, flt])
            pcm = np.concatenate([self._pend_i, pcm])
            kept = np.concatenate([self._pend_h, kept])
        n = self._frame_len
        whole = len(flt) // n * n
        events: list[VadEvent] = []
        for pos in range(0, whole, n):
            self._frame(flt[pos : pos + n], pcm[pos : pos + n], kept[pos : pos + n], events)
        self._pend_f = flt[whole:].copy()
        self._pend_i = pcm[whole:].copy()
        self._pend_h = kept[whole:].copy()
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an open utterance (a trailing partial frame is dropped), then :meth:`reset`."""
        events: list[VadEvent] = []
        if self._triggered:
            self._close(events, forced=False)
        self.reset()
        return events

    # -- per frame ---------------------------------------------------------------------------------------------

    def _frame(self, flt: np.ndarray, pcm: np.ndarray, kept: np.ndarray, events: list[VadEvent]) -> None:
        i = self._index
        self._index += 1
        voiced = self._vad.is_speech(pcm.tobytes(), self.options.sample_rate) and i >= self._warmup
        frame = kept.copy()
        if not self._triggered:
            self._history.append(frame)
            self._ring.append(voiced)
            if voiced and sum(self._ring) >= self._need:
                self._start(i, events)
                self._is_loud(flt)  # the first level
            return
        self._utt.append(frame)
        if voiced:
            self._voiced += 1
            if self._is_loud(flt):
                self._last_voiced = self._last_loud = i
                self._silence_run = 0
            else:
                if i - self._last_loud <= self._tail:
                    self._last_voiced = i
                self._silence_run += 1
        else:
            self._silence_run += 1
        growing = not self._silence_run and self._grow and i - self._grown_at >= self._grow
        if growing and self._voiced >= self._min_voiced:  # (not for what may still be a click)
            self._grown_at = i
            events.append(SpeechGrowing(self._pause_utterance()))
        if self._silence_run:
            if self._silence_run >= self._hangover:
                self._close(events, forced=False)
                return
            if self._silence_run == self._speculate and self._voiced >= self._min_voiced:
                events.append(SpeechPaused(self._pause_utterance()))
            if self._silence_run == self._check and self._voiced >= self._min_voiced:
                utt = self._pause_utterance()
                events.append(TurnCheck(utt, np.concatenate(self._utt)))
        if len(self._utt) >= self._max_frames:
            pausing = self._silence_run > 0
            self._close(events, forced=True)  # at the last voiced frame
            if not pausing:  # still talking: the next utterance starts with the next frame
                self._triggered = True
                self._utt_start = i + 1
                self._grown_at = i + 1
                self._last_voiced = self._last_loud = i
                events.append(SpeechStarted(self._time(i + 1)))

    def _pause_utterance(self) -> Utterance:
        """The open utterance as it would end at this pause (at its last voiced frame)."""
        keep = self._last_voiced - self._utt_start + 1
        start_s, end_s = self._pause_span()
        return Utterance(start_s, end_s, np.concatenate(self._utt[:keep]), self._voiced_time())

    def _pause_span(self) -> tuple[float, float]:
        """(start, end) of the open utterance as it would end at this pause."""
        return self._time(self._utt_start), self._time(self._last_voiced + 1)

    def end_turn(self, span: tuple[float, float]) -> list[VadEvent]:
        """End the open utterance now if it is still in the pause that ``span`` (a :class:`TurnCheck`'s) names;
        else (the user went on, or it ended already) nothing. The events are those of an ended pause."""
        if not self._triggered or not self._silence_run:
            return []
        if self._pause_span() != span:
            return []
        events: list[VadEvent] = []
        self._close(events, forced=False)
        return events

    def _is_loud(self, flt: np.ndarray) -> bool:
        """A voiced frame: is it within ``end_level_db`` of the utterance's level (counting itself)?"""
        if not self.options.end_level_db:
            return True
        level_db = 10 * math.log10(float(np.dot(flt, flt)) / len(flt) + 1e-12)
        bisect.insort(self._levels, level_db)
        speech_db = self._levels[int(LEVEL_PERCENTILE * (len(self._levels) - 1))]
        return level_db >= speech_db - self.options.end_level_db

    def _start(self, i: int, events: list[VadEvent]) -> None:
        ring = list(self._ring)
        onset = i - len(ring) + 1 + ring.index(True)
        first_kept = i - len(self._history) + 1
        start = max(onset - self._pre_roll, first_kept, i - self._max_frames + 2)
        self._utt = list(self._history)[start - first_kept :]
        self._utt_start = start
        self._voiced = sum(ring[onset - (i - len(ring) + 1) :])
        self._last_voiced = self._last_loud = i
        self._silence_run = 0
        self._grown_at = i
        self._triggered = True
        self._ring.clear()
        self._history.clear()
        events.append(SpeechStarted(self._time(onset)))

    def _close(self, events: list[VadEvent], *, forced: bool) -> None:
        """End the open utterance at its last voiced frame; frames after it go back to the pre-roll history."""
        keep = self._last_voiced - self._utt_start + 1
        start_s, end_s = self._time(self._utt_start), self._time(self._last_voiced + 1)
        if self._voiced < self._min_voiced or keep <= 0:
            log.debug("discarding %.2f-%.2f s: %d voiced frames", start_s, end_s, self._voiced)
            events.append(SpeechDiscarded(start_s, max(start_s, end_s)))
        else:
            samples = np.concatenate(self._utt[:keep])
            events.append(SpeechEnded(Utterance(start_s, end_s, samples, self._voiced_time()), forced=forced))
        for frame in self._utt[max(keep, 0) :]:
            self._history.append(frame)
        self._utt = []
        self._levels = []
        self._triggered = False
        self._voiced = 0
        self._silence_run = 0
        self._ring.clear()

    @property
    def in_speech(self) -> bool:
        """An utterance is open (the user is speaking, or paused within the hangover)."""
        return self._triggered

    @property
    def voiced_s(self) -> float:
        """Voice heard so far in the open utterance (0 when none is open)."""
        return self._voiced_time() if self._triggered else 0.0

    def _voiced_time(self) -> float:
        return self._voiced * self.options.frame_ms / 1000

    def _time(self, frame_index: int) -> float:
        return frame_index * self._frame_len / self.options.sample_rate


def segment(samples: np.ndarray, options: VadOptions | None = None) -> list[Utterance]:
    """All utterances of a whole recording (at ``options.sample_rate``)."""
    seg = VadSegmenter(options)
    events = seg.feed(samples) + seg.flush()
    return [e.utterance for e in events if isinstance(e, SpeechEnded)]
