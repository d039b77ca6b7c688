"""Keep the assistant's own voice, coming back through the microphone, from starting a new turn.

Three parts, all at 16 kHz mono float32 and in 10 ms steps:

- :class:`~voiceos.audio.reference.PlaybackReference` (its own module) records what the speaker played, indexed
  by *stream time*: the clock PortAudio uses for ``outputBufferDacTime`` and ``inputBufferAdcTime`` (one clock
  for every stream of a process; with ALSA it is the wall clock). ``ChunkPlayer(..., on_played=reference.write)``
  feeds it from the PortAudio callback, which only copies the block into a preallocated ring (no lock, no
  allocation); resampling to 16 kHz happens on the reader's side, so the callback stays cheap.
- :class:`EchoCanceller` is WebRTC's echo canceller (AEC3, from the ``livekit`` package's prebuilt
  ``AudioProcessingModule``): it subtracts the modelled echo of the reference from the microphone.
- :class:`EchoGate` decides, per microphone frame, whether the voiced audio is the user or our own echo, so the
  VAD is fed room noise instead of echo while a user talking over the assistant (barge-in) still gets through.

How the daemon uses it (the microphone thread)::

    reference = PlaybackReference(player_rate)
    player = ChunkPlayer(player_rate, device, on_played=reference.write)
    gate = EchoGate(reference, EchoOptions())      # mode "aec"; "gate" (with a warning) when livekit is missing
    ...
    result = gate.process(frame_16k, adc_time)     # a multiple of 10 ms; adc_time: inputBufferAdcTime of its
    events = vad.feed(result.audio)                # first sample (or None: right after the previous frame)
    ...
    player.stop(); reference.cut(adc_time)         # barge-in: what was queued was never heard

``result.audio`` is the microphone as is while nothing was played recently, the echo-cancelled microphone while
the user is heard, and room noise in place of echo (``result.echo``). The player must run at least ``lead_ms``
ahead of the DAC (ChunkPlayer's default latency is 0.1 s) so the reference is there before its echo.

Decision, per 10 ms: ``R`` is the loudest 10 ms played from ``max_delay_ms`` before the frame to ``lead_ms``
after it (echo path, reverberation and timestamp error fall in that window). With ``R`` under
``reference_floor_db`` the frame passes unchanged. Otherwise it is the user's when what reaches the VAD (the
canceller's output, or the microphone in mode ``gate``) exceeds ``coupling * R`` by ``margin_db`` and the noise
floor by 10 dB. ``coupling`` is the upper envelope of that ratio over frames that are surely echo (with AEC: frames
the canceller took ``guard_db`` off; it leaves a user's voice alone), starting from ``initial_coupling_db``. Where
the canceller cannot be trusted (its first 2.5 s of sound, around timing breaks, frames it barely changed) the raw
microphone must also exceed the raw echo's envelope by the margin. A user frame opens the gate for ``hold_ms``.

Measured (tests/test_echo.py: Piper replies, a simulated room, and the virtual speaker's monitor): AEC3 takes
45-65 dB off an echo-only microphone once settled; echo alone starts no VAD turn; a user talking over the reply
starts one 70-100 ms after their onset. In mode ``gate`` (no AEC) only a user clearly louder than the echo is heard.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import NamedTuple

import numpy as np

from voiceos.audio.rate import SAMPLE_RATE
from voiceos.audio.reference import PlaybackReference
from voiceos.config import EchoMode, EchoOptions

log = logging.getLogger(__name__)

__all__ = ["EchoCanceller", "EchoCancellerUnavailable", "EchoGate", "EchoOptions", "GateResult"]

FRAME = SAMPLE_RATE // 100  # 10 ms: the echo canceller's frame, and the gate's decision step
_SPEECH_FLOOR = 10 ** (-60 / 10)  # mean square of -60 dBFS: quieter is never taken for the user
_REDUCED = 10 ** (3 / 10)  # a frame the canceller took 3 dB off had echo in it, and what is left is not echo
# Envelope followers (attack, release per 10 ms), tuned on Piper replies: the AEC's residual varies little and may
# be followed closely; the raw echo swings with the room and the words, so it is held higher, and highest in mode
# gate, where nothing proves that a frame is echo (with AEC, only frames it cancelled are learnt from).
_FOLLOW_AEC = (0.3, 0.05)
_FOLLOW_RAW = (0.5, 0.03)
_FOLLOW_GATE = (0.5, 0.01)
# AEC3's initial state (EchoCanceller3Config filter.initial_state_seconds): measured, it still leaks at the
# onsets of the first sentences, so its residual is not trusted alone before this much sounding reference.
_AEC_INITIAL_S = 2.5
_GATE_EXTRA_MARGIN_DB = 4.0
# A user is heard only where the microphone itself is within this much of the loudest echo it may hold: a user who
# speaks raises it. Below that the microphone is quiet, and what is left after the canceller is the quiet end of a
# word or its reverberation, shaped like speech (webrtcvad calls it voice at any level). Measured through the virtual
# loopback (echo as loud as the reply): a frame with the microphone at -52 dBFS, 26 dB under the echo's peak, passed
# the learnt coupling with its residual and, with the frames the hold let through after it, cut a reply. (Judging
# the residual instead also turned away onsets that AEC3 had suppressed by 40 dB, and barge-in lost more words.)
_BELOW_ECHO_DB = 20.0


class EchoCancellerUnavailable(RuntimeError):
    """The echo-cancellation library (``livekit``) is not installed or does not load."""


class EchoCanceller:
    """WebRTC AEC3 through ``livekit.rtc.AudioProcessingModule``; no network involved, it runs in-process.

    ``process`` takes microphone and reference blocks of equal length (a multiple of 10 ms at 16 kHz): each
    10 ms of reference goes in as the far end just before the matching 10 ms of microphone. The output lags
    its input by about 8 ms (AEC3's block processing).
    """

    def __init__(self, delay_ms: int = 0) -> None:
        try:
            from livekit import rtc
        except Exception as err:  # ImportError, or OSError from its native library
            raise EchoCancellerUnavailable(f"livekit is not available ({err})") from None
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True)
        self._apm.set_stream_delay_ms(int(delay_ms))
        self._near = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME)
        self._far = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME)
        self._near_pcm = np.frombuffer(self._near.data, np.int16)
        self._far_pcm = np.frombuffer(self._far.data, np.int16)

    def process(self, mic: np.ndarray, reference: np.ndarray) -> np.ndarray:
        if len(mic) != len(reference) or len(mic) % FRAME:
            raise ValueError(f"mic and reference must be equal multiples of {FRAME} samples")
        out = np.empty(len(mic), np.float32)
        near = _to_pcm(mic)
        far = _to_pcm(reference)
        for pos in range(0, len(mic), FRAME):
            self._far_pcm[:] = far[pos : pos + FRAME]
            self._apm.process_reverse_stream(self._far)
            self._near_pcm[:] = near[pos : pos + FRAME]
            self._apm.process_stream(self._near)
            out[pos : pos + FRAME] = self._near_pcm
        out *= np.float32(1 / 32768)
        return out


def _to_pcm(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def _energies(x: np.ndarray) -> np.ndarray:
    """Mean square per 10 ms."""
    return np.mean(np.square(x.reshape(-1, FRAME), dtype=np.float64), axis=1)


class GateResult(NamedTuple):
    audio: np.ndarray  # what to feed the VAD: the (echo-cancelled) microphone, or room noise when ``echo``
    echo: bool  # the assistant is (or just was) speaking and nothing in the frame is louder than its echo
    # Seconds of the block that are surely the user's own sound: judged louder than the echo could be, or nothing
    # played could be in them, and the gaps between such frames when the voice came back within ``hold_ms`` (the
    # quieter stretches inside a word). A hold the voice did not come back to is not counted, nor what the
    # canceller left: webrtcvad calls a canceller's residual voice, and a 0.2 s cough over a loud echo counted as
    # 0.5 s of it cut a reply. (Counting the loud frames alone took over 1 s of a reader's voice to reach 0.5 s.)
    user_s: float = 0.0
    # When ``echo``: what the canceller left of the block, for an utterance's own audio (its onset may sit in frames
    # hidden from the VAD; see VadSegmenter.feed). None: ``audio`` is that already.
    heard: np.ndarray | None = None


class _Envelope:
    """The upper envelope of a level ratio in dB: rises fast towards louder frames, decays slowly on quieter ones.

    The decay is proportional to the distance, so a first guess far too high (0 dB before AEC3 converged) comes
    down within a few hundred ms, while a frame quieter than usual moves it little.
    """

    def __init__(self, db: float, attack: float, release: float) -> None:
        self.db = db
        self._attack, self._release = attack, release

    def update(self, ratio: float) -> None:
        ratio_db = 10 * math.log10(max(ratio, 1e-12))
        rate = self._attack if ratio_db > self.db else self._release
        self.db = min(20.0, max(-80.0, self.db + rate * (ratio_db - self.db)))

    @property
    def gain(self) -> float:
        return 10 ** (self.db / 10)


class EchoGate:
    """Per-frame user-or-echo decisions on the microphone (see the module docstring); one microphone thread.

    Frames judged echo come back as *room noise* (the microphone's own noise spectrum and level), not digital
    silence: webrtcvad calls the step from silence back to real noise speech, which would start a turn.

    Timing breaks make the canceller misaligned for a moment (an output underrun shifts what was already
    buffered; measured: tens of ms), and its residual then looks like a user. For ``_SETTLE_S`` around a break
    in the playback (or a jump in the microphone's timestamps), a frame is the user's only if the raw
    microphone is also louder than the raw echo would be: barge-in then needs a louder voice, briefly.
    """

    _NOISE_WINDOW = 200  # 10 ms frames: the noise floor is the quietest of the last 2 s (minimum statistics)
    _NOISE_MARGIN = 10.0  # dB: the user must be this far above the noise floor
    _JITTER_S = 0.015  # capture timestamps within this of the running count are jitter, not a jump
    _SETTLE_S = 1.0

    def __init__(self, reference: PlaybackReference | None, options: EchoOptions | None = None) -> None:
        self.options = o = options or EchoOptions()
        self.reference = reference
        self.mode: EchoMode = o.mode if reference is not None else "off"
        self.canceller: EchoCanceller | None = None
        if self.mode == "aec":
            try:
                self.canceller = EchoCanceller(delay_ms=o.lead_ms)
            except EchoCancellerUnavailable as err:
                log.warning("echo cancellation unavailable, gating on the playback reference only: %s", err)
                self.mode = "gate"
        described = {"aec": "WebRTC AEC3 (livekit) + gate", "gate": "gate on the playback reference only"}
        log.info("echo handling: %s", described.get(self.mode, "off"))
        self._delay_frames = math.ceil(o.max_delay_ms / 10)
        self._lead_frames = math.ceil(o.lead_ms / 10)
        self._floor = 10 ** (o.reference_floor_db / 10)
        # Without the canceller nothing proves a frame is echo, and the raw echo swings with the words: measured,
        # margin_db alone let one Piper reply in five through at full echo level, so gate mode adds 4 dB.
        self._margin = 10 ** ((o.margin_db + (0.0 if self.canceller else _GATE_EXTRA_MARGIN_DB)) / 10)
        self._guard = 10 ** (o.guard_db / 10)
        self._below_echo = 10 ** (-_BELOW_ECHO_DB / 10)
        # What reaches the VAD vs the reference (the AEC's residual, or the raw echo in mode gate), and the raw echo.
        self.coupling = _Envelope(o.initial_coupling_db, *(_FOLLOW_AEC if self.canceller else _FOLLOW_GATE))
        self.raw_coupling = _Envelope(o.initial_coupling_db, *_FOLLOW_RAW)
        self._sounding_s = 0.0  # how long the canceller has been fed a sounding reference
        self._next_time: float | None = None
        self._mic_break = -math.inf
        self._hold_until = -math.inf
        self._user_until = -math.inf  # stream time at the end of the latest frame heard as the user
        self._levels: deque[float] = deque(maxlen=self._NOISE_WINDOW)
        self.noise = _SPEECH_FLOOR  # the microphone's noise floor (mean square)
        self._noise_psd: np.ndarray | None = None  # power spectrum of quiet frames, averaged
        self._noise_level = np.zeros(1)  # their mean square, averaged
        self._fir: np.ndarray | None = None
        self._white_tail = np.zeros(FRAME - 1, np.float32)
        self._rng = np.random.default_rng(0)
        self.echo_frames = 0  # 10 ms frames replaced as echo
        self.user_frames = 0  # 10 ms frames heard as the user while the reference played
        self._last_user: tuple[float, float, float] | None = None  # (mic, output, reference) energies

    def describe_last_user(self) -> str:
        """The levels behind the latest frame taken for the user over playback (for the barge-in log line)."""
        if self._last_user is None:
            return "nothing was playing" if self.mode != "off" else "echo handling off"
        m, x, r = (10 * math.log10(max(e, 1e-12)) for e in self._last_user)
        return (
            f"microphone {m:.0f} dB, after the canceller {x:.0f} dB, played {r:.0f} dB, "
            f"echo coupling {self.coupling.db:.0f} dB (raw {self.raw_coupling.db:.0f} dB)"
        )

    def process(self, mic: np.ndarray, time_s: float | None = None) -> GateResult:
        """Judge ``mic`` (16 kHz, a multiple of 10 ms) captured from ``time_s`` (stream time of its first sample).

        ``time_s=None`` continues right after the previous frame; a time within 15 ms of that is taken as jitter.
        """
        mic = np.asarray(mic, dtype=np.float32)
        if mic.ndim != 1 or len(mic) % FRAME:
            raise ValueError(f"EchoGate takes mono frames of a multiple of {FRAME} samples, got shape {mic.shape}")
        time_s = self._capture_time(time_s)
        self._next_time = time_s + len(mic) / SAMPLE_RATE
        whole = len(mic) / SAMPLE_RATE
        if self.mode == "off" or self.reference is None or not len(mic):
            return GateResult(mic, False, whole)
        mic_e = _energies(mic)
        n_sub = len(mic) // FRAME
        d, lead = self._delay_frames, self._lead_frames
        span = self.reference.read(time_s - d * FRAME / SAMPLE_RATE, (d + n_sub + lead) * FRAME)
        ref_e = np.lib.stride_tricks.sliding_window_view(_energies(span), d + lead + 1).max(axis=1)
        self._track_noise(mic, mic_e, ref_e < self._floor)
        out = mic
        if self.canceller is not None:  # always: skipping the quiet stretches made AEC3 leak when the voice resumed
            out = self.canceller.process(mic, span[(d + lead) * FRAME :][: len(mic)])
        if ref_e.max() < self._floor:
            return GateResult(mic, False, whole)  # nothing we played can be in this frame: pass it unchanged
        unsettled = time_s - self._mic_break < self._SETTLE_S or self.reference.broken(
            time_s - self._SETTLE_S, self._next_time + self.options.lead_ms / 1000 + 0.2
        )
        heard, silent = self._judge(mic_e, _energies(out), ref_e, unsettled)  # sub-frames heard as the user, and
        user = len(heard)  # how many where nothing played can be heard
        if user:
            self._hold_until = self._next_time + self.options.hold_ms / 1000
        user_s = silent * FRAME / SAMPLE_RATE + self._users_voice(heard, time_s)
        if user or time_s < self._hold_until:
            return GateResult(out, False, user_s)
        return GateResult(self._comfort_noise(len(mic)), True, user_s, out)

    def _users_voice(self, heard: list[int], time_s: float) -> float:
        """Seconds of the user's voice in the sub-frames ``heard`` (indices from ``time_s``): each frame, and the gap
        before it when it is within ``hold_ms`` of the previous one."""
        bridge, total = self.options.hold_ms / 1000, 0.0
        for index in heard:
            start = time_s + index * FRAME / SAMPLE_RATE
            gap = start - self._user_until
            total += FRAME / SAMPLE_RATE + (gap if 0.0 < gap <= bridge else 0.0)
            self._user_until = start + FRAME / SAMPLE_RATE
        return total

    def _capture_time(self, time_s: float | None) -> float:
        expected = self._next_time
        if time_s is None:
            if expected is None:
                raise ValueError("the first frame needs its capture time")
            return expected
        if expected is None or abs(time_s - expected) <= self._JITTER_S:
            return time_s if expected is None else expected
        self._mic_break = time_s  # frames were lost, or the clock jumped
        return time_s

    def _judge(self, mic_e: np.ndarray, out_e: np.ndarray, ref_e: np.ndarray, unsettled: bool) -> tuple[list[int], int]:
        """Decide the sub-frames and learn the couplings from those that are surely echo; the indices of those heard
        as the user, and how many had a silent reference (nothing played can be in them)."""
        user: list[int] = []
        silent = 0
        speech_floor = max(_SPEECH_FLOOR, self.noise * 10 ** (self._NOISE_MARGIN / 10))
        aec = self.canceller is not None
        for index, (m, x, r) in enumerate(zip(mic_e.tolist(), out_e.tolist(), ref_e.tolist(), strict=True)):
            if r < self._floor:
                silent += 1
                continue
            self._sounding_s += FRAME / SAMPLE_RATE
            heard = (
                x > speech_floor
                and x > self.coupling.gain * r * self._margin
                and m > self.raw_coupling.gain * r * self._below_echo
            )
            young = self._sounding_s < _AEC_INITIAL_S
            if heard and aec and (unsettled or young or m < x * _REDUCED):
                # The canceller may have left echo here: misaligned, still in its initial state, or it let a loud
                # echo through (AEC3 does when it is louder than the reference). Believe only a voice that stands
                # out of the raw echo, and that the canceller did not take guard_db off: it leaves a user's voice
                # alone, and one loud enough to stand out of the echo is barely reduced (measured: young AEC3 took
                # 27 dB off an onset of the reply and left the rest 35 dB over its usual residual; the raw envelope
                # had fallen to where that onset passed it, and the echo started a turn).
                heard = m > self.raw_coupling.gain * r * self._margin and m <= x * self._guard
            if heard:
                user.append(index)
                self.user_frames += 1
                self._last_user = (m, x, r)
                continue
            self.echo_frames += 1
            if aec:  # reduced by the canceller, so not a user (whose voice it leaves alone)
                surely_echo = not unsettled and m > self.noise * self._guard and m > x * self._guard
            else:  # echo well above the noise, not the noise itself
                surely_echo = x > self.noise * 4
            if surely_echo:
                self.coupling.update(x / r)
                self.raw_coupling.update(m / r)
        return user, silent

    def _track_noise(self, mic: np.ndarray, mic_e: np.ndarray, quiet: np.ndarray) -> None:
        """Noise floor by minimum statistics; the spectrum of frames near it, averaged, for comfort noise.

        Learnt only from ``quiet`` frames, where nothing played can be heard: over 2 s of a reply without a pause,
        the quietest frames are echo (measured through the virtual loopback: the floor rose from -91 to -48 dBFS
        within 2 s, and the comfort noise took the echo's spectrum at that level). With it, 0.2 s of voice over
        the reply went on as an utterance after the voice had stopped and cut the reply (3 of 7 traced runs).
        """
        window = np.hanning(FRAME).astype(np.float32)
        for k, e in enumerate(mic_e.tolist()):
            if not quiet[k]:
                continue
            self._levels.append(e)
            if 0 < e <= 2 * self.noise:
                frame = mic[k * FRAME : (k + 1) * FRAME]
                psd = np.abs(np.fft.rfft(frame * window)) ** 2
                if self._noise_psd is None:
                    self._noise_psd, self._noise_level = psd, np.array([e])
                else:
                    self._noise_psd += 0.05 * (psd - self._noise_psd)
                    self._noise_level += 0.05 * (e - self._noise_level)
                self._fir = None
        if self._levels:
            self.noise = max(min(self._levels) * 1.5, 1e-12)  # the minimum of noisy estimates is biased low

    def _comfort_noise(self, n: int) -> np.ndarray:
        """Stationary noise with the spectrum and level of the microphone's quiet frames, continuous across calls.

        White noise through a linear-phase FIR made from the averaged noise spectrum: spliced real frames would
        click at every seam, and webrtcvad hears such clicks as speech.
        """
        if self._noise_psd is None:
            return np.zeros(n, np.float32)
        if self._fir is None:
            h = np.fft.irfft(np.sqrt(self._noise_psd), n=FRAME)
            h = np.roll(h, FRAME // 2) * np.hanning(FRAME)
            self._fir = (h / np.sqrt(np.sum(h**2))).astype(np.float32)
        # Never louder than the floor the microphone has now: a spectrum learnt from the quiet start of an
        # utterance, replayed over a (digitally) silent microphone, is what webrtcvad calls speech.
        level = min(float(np.mean(self._noise_level)), self.noise)
        white = self._rng.standard_normal(n).astype(np.float32)
        history = np.concatenate([self._white_tail, white])
        self._white_tail = history[-(FRAME - 1) :]
        return (np.convolve(history, self._fir, mode="valid") * np.float32(np.sqrt(level))).astype(np.float32)
