"""The daemon's ears and mouth: the microphone and speaker streams, and every microphone frame's path up to the
endpointer's events (echo stage -> VAD).

:class:`AudioLoop` opens both devices, feeds the frames it hears through the echo gate and the VAD on the event loop
(microseconds per frame) and hands the resulting events to a :class:`SpeechListener` (the assistant), which decides
about turns and interruptions. A device that cannot be opened is retried with backoff; a stream that stalls (device
removed, sound server gone) or a loop that fails is closed and reopened, so the daemon never goes deaf silently.
The echo reference and gate live as long as the loop: what the canceller learns carries over from reply to reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from voiceos.audio.device_thread import DeviceThread
from voiceos.audio.echo import EchoGate
from voiceos.audio.microphone import Microphone, device_name, rescan_devices
from voiceos.audio.playback import ChunkPlayer, resolve_device
from voiceos.audio.probe import probe_command, probe_devices
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.audio.reference import PlaybackReference
from voiceos.config import AudioOptions, Config
from voiceos.errors import AudioDeviceError
from voiceos.turn import EndOfTurn, SilenceOnly
from voiceos.vad import VadEvent, VadSegmenter

log = logging.getLogger(__name__)

ECHO_FRAME = SAMPLE_RATE // 100  # the echo stage works in 10 ms steps
T = TypeVar("T")


class SpeechListener(Protocol):
    """What the audio loop tells the assistant."""

    def on_speech(self, events: list[VadEvent], voiced_s: float, users_voice_s: float) -> None:
        """The VAD's events for one block of microphone audio (often none); the open utterance's voice so far as
        webrtcvad counts it, and as the echo stage does (only what it judged the user's own while something
        played: see GateResult.user_s)."""

    def on_audio_state(self, state: str, detail: str = "") -> None:
        """``open`` (both devices in use), ``no_audio`` (a device cannot be opened; retrying), ``lost``, or
        ``muted`` (the microphone closed on purpose)."""


def device_counters(mic: Microphone | None, player: ChunkPlayer | None) -> dict[str, int]:
    """Audio faults counted by the open streams (PortAudio callbacks only increment integers)."""
    return {
        "input_overflows": mic.overflows if mic else 0,  # PortAudio: the callback was late, input lost
        "input_dropped_blocks": mic.dropped_blocks if mic else 0,  # the event loop fell behind the microphone
        "output_underflows": player.xruns if player else 0,  # PortAudio: the callback was late, silence played
        "output_underflows_in_reply": player.xruns_in_reply if player else 0,  # of those, while a reply played
        "output_underruns": player.underruns if player else 0,  # the reply's audio ran dry mid-reply (TTS late)
    }


SLOW_DEVICE_CALL_S = 3.0  # a device call this slow: the sound system does not answer (opening takes ~0.1 s)


class _Stopped(Exception):
    """The daemon stops while a device call still runs: nobody waits for it any more."""


class _Muted(Exception):
    """The microphone is to be closed until unmuted (``voiceos mute``, "stop listening")."""


def open_devices(
    audio: AudioOptions,
    output_rate: int,
    on_played: Callable[..., None],
    loop: asyncio.AbstractEventLoop,
) -> tuple[ChunkPlayer, Microphone, str]:
    """The speaker and the microphone streams, and the speaker's name (device thread: PortAudio calls). If the
    microphone cannot be opened, the speaker opened before it is closed again."""
    player = ChunkPlayer(
        output_rate,
        resolve_device(audio.output_device, "output"),
        max_queued_s=600.0,
        latency=audio.output_latency_ms / 1000,
        on_played=on_played,
    )
    try:
        microphone = Microphone(
            resolve_device(audio.input_device, "input"), sample_rate=audio.input_sample_rate, loop=loop
        )
    except BaseException:
        with contextlib.suppress(Exception):
            player.close()
        raise
    return player, microphone, device_name(player.device, "output")


def open_microphone(audio: AudioOptions, loop: asyncio.AbstractEventLoop) -> Microphone:
    """The microphone stream alone (device thread): after a mute, beside the speaker still open."""
    return Microphone(resolve_device(audio.input_device, "input"), sample_rate=audio.input_sample_rate, loop=loop)


def close_devices(player: ChunkPlayer | None, microphone: Microphone | None, rescan: bool) -> None:
    """Close both streams (device thread), then re-initialise PortAudio if ``rescan`` (a device was lost)."""
    if microphone is not None:
        microphone.close()
    if player is not None:
        with contextlib.suppress(Exception):
            player.close()
    if rescan:
        rescan_devices()


class AudioLoop:
    def __init__(
        self,
        config: Config,
        output_rate: int,
        listener: SpeechListener,
        end_of_turn: EndOfTurn | None = None,
        *,
        partials: bool = False,
    ) -> None:
        self.config = config
        self.partials = partials  # announce the growing utterance every asr.partial_ms (words while the user speaks)
        self.end_of_turn: EndOfTurn = end_of_turn or SilenceOnly()
        self.output_rate = output_rate
        self.listener = listener
        self.microphone: Microphone | None = None
        self.player: ChunkPlayer | None = None
        self.error = ""
        self.lost = 0  # times the open microphone stopped (device removed, sound server gone)
        self.ready = asyncio.Event()  # set while both devices are open
        self.vad = self._segmenter(config)
        self.reference = PlaybackReference(output_rate)
        self.echo = EchoGate(self.reference, config.echo)
        self.last_adc = 0.0  # capture time of the end of the last microphone audio processed
        self._users_voice_s = 0.0  # of the open utterance, the voice the echo stage judged the user's own
        self._pending = np.zeros(0, dtype=np.float32)  # microphone samples short of a 10 ms echo frame
        self._totals = device_counters(None, None)  # of streams closed so far (reopened after a loss)
        self._output_name = ""
        self.devices = DeviceThread()  # every PortAudio call that may block (open, close, rescan)
        self.muted = False  # the microphone is closed on purpose: nothing is heard, the name neither
        self._mute_asked = asyncio.Event()
        self._unmute_asked = asyncio.Event()

    # -- configuration -------------------------------------------------------------------------------------------
    def use_config(self, config: Config, *, new_vad: bool = False, new_echo: bool = False) -> None:
        """A reload (on the event loop): a new endpointer drops an utterance being spoken at that moment, and a new
        echo stage learns the echo path again."""
        self.config = config
        if new_vad:
            self.vad = self._segmenter(config)
        if new_echo:
            self.echo = EchoGate(self.reference, config.echo)

    def _segmenter(self, config: Config) -> VadSegmenter:
        """The endpointer under the end-of-turn strategy (its hangover, and when it asks about a pause)."""
        grow_ms = config.asr.partial_ms if self.partials else 0
        return VadSegmenter(
            self.end_of_turn.vad_options(config.vad), check_ms=self.end_of_turn.check_ms, grow_ms=grow_ms
        )

    # -- state ---------------------------------------------------------------------------------------------------
    def output_name(self) -> str | None:
        return self._output_name if self.player is not None else None

    def faults(self) -> dict[str, int]:
        """Overflows, underflows, dropped blocks and mid-reply gaps since start, over every stream opened."""
        current = device_counters(self.microphone, self.player)
        return {key: total + current[key] for key, total in self._totals.items()}

    def stop_playback(self) -> None:
        """Cut the reply being played at once; what was still queued was never heard, so no echo of it will come."""
        if self.player is not None:
            self.player.stop()
            self.reference.cut(self.last_adc)

    def set_muted(self, muted: bool) -> None:
        """Close the microphone stream (``muted``) until this is called with False; the speaker stays open."""
        self.muted = muted
        (self._mute_asked if muted else self._unmute_asked).set()

    # -- the loop ------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Open the devices and listen until ``stop``; a lost device or sound server is reopened with backoff.
        Opening, closing and rescanning run on the device thread (see :mod:`voiceos.audio.device_thread`)."""
        delay = 0.5
        loop = asyncio.get_running_loop()
        retrying = False  # after a failed open or a lost device: try in a child first (voiceos.audio.probe)
        try:
            while not stop.is_set():
                try:
                    if retrying:
                        await self._probe()
                    self.player, self.microphone, self._output_name = await self._on_device_thread(
                        stop, open_devices, self.config.audio, self.output_rate, self.reference.write, loop
                    )
                except AudioDeviceError as err:
                    retrying = True
                    self.error = str(err)
                    self.listener.on_audio_state("no_audio", f"{err}; retrying in {delay:.1f} s")
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, self.config.audio.reconnect_max_s)
                    await self._on_device_thread(stop, rescan_devices)
                    continue
                delay, retrying = 0.5, False
                self.error = ""
                self.ready.set()
                assert self.microphone is not None  # just opened
                log.info("listening on %s, speaking on %s", self.microphone.name, self._output_name)
                self.listener.on_audio_state("open")
                lost = False
                while not stop.is_set():
                    try:
                        lost = await self._listen(stop)
                        break
                    except _Muted:
                        lost = not await self._stay_muted(stop, loop)
                        if lost:
                            break
                    except Exception:  # a bug must not leave the daemon deaf while it still answers on the socket
                        log.exception("the audio loop failed; reopening the devices")
                        lost = True
                        await asyncio.sleep(0.5)  # no busy loop if it fails again at once
                        break
                microphone = self.microphone.name if self.microphone is not None else "?"
                self.ready.clear()
                devices = self._detach()
                if lost:
                    retrying = True
                    self.lost += 1
                    self.error = f"microphone {microphone} stopped (device removed or sound server gone)"
                    log.warning("audio stopped: %s; reopening", self.error)
                    self.listener.on_audio_state("lost", f"{self.error}; reconnecting")
                await self._on_device_thread(stop, close_devices, *devices, lost)
        except _Stopped:
            pass

    async def _stay_muted(self, stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> bool:
        """Close the microphone until unmuted, then open it again; False when it cannot be (the devices are then
        reopened as after a loss)."""
        microphone, self.microphone = self.microphone, None
        if microphone is not None:
            await self._on_device_thread(stop, microphone.close)
        log.info("muted: the microphone is closed")
        self.listener.on_audio_state("muted")
        while self.muted and not stop.is_set():
            self._unmute_asked.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._unmute_asked.wait(), 0.5)
        if stop.is_set():
            return True
        try:
            self.microphone = await self._on_device_thread(stop, open_microphone, self.config.audio, loop)
        except AudioDeviceError as err:
            self.error = str(err)
            return False
        log.info("unmuted: listening on %s", self.microphone.name)
        self.listener.on_audio_state("open")
        return True

    async def _probe(self) -> None:
        """AudioDeviceError unless a child process could open the configured devices (see voiceos.audio.probe)."""
        audio = self.config.audio
        what = f"microphone {audio.input_device} / speaker {audio.output_device}"
        failure = await probe_devices(probe_command(audio), what)
        if failure is not None:
            raise AudioDeviceError(failure)

    async def _on_device_thread(self, stop: asyncio.Event, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the device thread. While it takes over ``SLOW_DEVICE_CALL_S``, status says the sound
        system does not answer; at ``stop`` the loop stops waiting for it (:class:`_Stopped`)."""
        future = self.devices.submit(fn, *args)
        hung = False
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.25)
            if done:
                if hung:
                    log.warning("the sound system answers again (%s returned)", fn.__name__)
                return future.result()
            if stop.is_set():
                raise _Stopped
            if not hung and self.devices.busy_s() > SLOW_DEVICE_CALL_S:
                hung = True  # (no device is in use during these calls: ready is clear already)
                self.error = f"the sound system does not answer ({self.devices.current} has waited over "
                self.error += f"{SLOW_DEVICE_CALL_S:.0f} s)"
                log.warning("%s", self.error)
                self.listener.on_audio_state("no_audio", f"{self.error}; waiting for it")

    def _detach(self) -> tuple[ChunkPlayer | None, Microphone | None]:
        """Take the streams out of use (on the loop), keeping their counters, for closing on the device thread."""
        self._totals = self.faults()
        devices = self.player, self.microphone
        self.player = self.microphone = None
        return devices

    def close(self) -> None:
        """Release both devices (at shutdown): on the device thread, waited for at most 2 s."""
        player, microphone = self._detach()
        if (player or microphone) and not self.devices.call(close_devices, player, microphone, False, timeout=2.0):
            log.warning("closing the audio devices did not finish in 2 s; the sound system does not answer")
        self.devices.stop()

    async def _listen(self, stop: asyncio.Event) -> bool:
        """Feed microphone frames to the VAD until stop (False) or the stream stalls (True)."""
        mic = self.microphone
        assert mic is not None
        self.vad.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        frames = mic.frames()
        # The next frame is a task that a timeout leaves running: cancelling it (as wait_for does) raises inside
        # the generator and ends it, and a pause in the audio shorter than a stall would leave the daemon deaf.
        pending: asyncio.Future | None = None
        self._mute_asked.clear()
        mute = asyncio.ensure_future(self._mute_asked.wait())
        try:
            while not stop.is_set():
                if self.muted:
                    raise _Muted
                if pending is None:
                    pending = asyncio.ensure_future(anext(frames))
                done, _ = await asyncio.wait({pending, mute}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if self.muted:
                    raise _Muted
                if mute in done:  # muted and unmuted again meanwhile: watch for the next one
                    done.discard(mute)
                    self._mute_asked.clear()
                    mute = asyncio.ensure_future(self._mute_asked.wait())
                if not done:
                    if mic.stalled():
                        return True
                    continue
                frame, pending = pending, None
                try:
                    samples, adc_time = frame.result()
                except StopAsyncIteration:  # the microphone was closed
                    return True
                self.hear(samples, adc_time)
                if mic.stalled():
                    return True
        finally:
            mute.cancel()
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await frames.aclose()
        return False

    def hear(self, samples: np.ndarray, adc_time: float) -> None:
        """One block of 16 kHz microphone audio captured at ``adc_time``: echo stage in 10 ms multiples (stamped
        with their capture time), then the VAD, whose events go to the listener."""
        start_time = adc_time - len(self._pending) / SAMPLE_RATE
        pending = np.concatenate([self._pending, samples]) if self._pending.size else samples
        usable = len(pending) // ECHO_FRAME * ECHO_FRAME
        self._pending = pending[usable:]
        if not usable:
            return
        self.last_adc = start_time + usable / SAMPLE_RATE
        gated = self.echo.process(pending[:usable], start_time)
        if not self.vad.in_speech:  # an utterance that starts in this block counts the user's voice from here
            self._users_voice_s = 0.0
        self._users_voice_s += gated.user_s
        events = self.vad.feed(gated.audio, gated.heard)
        self.listener.on_speech(events, self.vad.voiced_s, self._users_voice_s)
