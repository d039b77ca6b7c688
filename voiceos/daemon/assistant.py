"""The live assistant: microphone -> VAD -> turn (ASR -> LM -> TTS) -> speaker, with barge-in and memory.

Threads and where work runs:

- PortAudio threads only copy audio (``Microphone`` callback in, ``ChunkPlayer`` callback out).
- The event loop resamples the microphone audio and runs the audio loop (:mod:`voiceos.daemon.audio_loop`: echo gate
  and VAD, microseconds per frame), publishes events, and hands the VAD's events to the turn controller
  (:mod:`voiceos.daemon.turn_controller`, pure logic), whose decisions about turns and interruptions are carried
  out here.
- One model thread (a single-worker executor) runs ASR, the LM and TTS, so the models never fight for the two
  cores; synthesized audio goes straight from there into the player's queue, sentence by sentence.

A turn (:mod:`voiceos.daemon.turn_state`) is cancelled through a ``threading.Event`` the model thread checks between
tokens and audio chunks; a pause in the user's speech starts a held one (the reply's head start). After an
interruption the history keeps only what the user heard: the player's count of samples actually played says how far
the reply got (:meth:`TurnResult.heard_text`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voiceos.asr import Transcriber
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import Config, VadOptions
from voiceos.daemon.alarms import AlarmRinger
from voiceos.daemon.audio_loop import AudioLoop
from voiceos.daemon.bus import EventBus
from voiceos.daemon.heap import release_free_memory
from voiceos.daemon.reply import ALARM, heard_seconds, heard_text, reply_in_model_thread, wait_until_heard
from voiceos.daemon.speculation import SpeculativeTranscription
from voiceos.daemon.turn_completion import TurnCompletion
from voiceos.daemon.turn_controller import (
    Action,
    CheckEndOfTurn,
    CommitReply,
    DropSpeculation,
    HoldReply,
    Interrupted,
    Phase,
    Publish,
    Speculate,
    StartReply,
    TranscribePartial,
    TurnController,
    TurnPolicy,
)
from voiceos.daemon.turn_state import Turn
from voiceos.errors import AudioInputError, VoiceosError
from voiceos.events import (
    ErrorEvent,
    PartialTranscriptEvent,
    SpeakingEnded,
    SpeakingStarted,
    StateChanged,
    TimingsEvent,
    TranscriptEvent,
    UtteranceIgnored,
)
from voiceos.model_thread import ModelThread
from voiceos.pipeline import Pipeline, TurnResult, rounded_timings, segments_json
from voiceos.privacy import TranscriptLog
from voiceos.skills import AlarmControl
from voiceos.turn import EndOfTurn
from voiceos.vad import SpeechStarted, Utterance, VadEvent
from voiceos.wake import load_turn_start

log = logging.getLogger(__name__)
AUDIO_LOST = "audio lost"  # why a turn is interrupted when the devices go away
ACKNOWLEDGE = "Yes?"  # said to its name alone
JOIN_UNADDRESSED_S = 1.5  # an unaddressed utterance is read again in front of the next within this gap


class Assistant:
    """Owns the pipeline, the audio devices and the conversation state; the control socket drives it too."""

    def __init__(
        self,
        pipeline: Pipeline,
        bus: EventBus,
        *,
        notifier: Any = None,
        end_of_turn: EndOfTurn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.config = pipeline.config
        self.bus = bus
        self.notifier = notifier
        self.state = "starting"
        self.state_detail = ""
        self.started_at = time.monotonic()
        self.turns = 0
        self.interruptions = 0
        self.extra_status: dict[str, Callable[[], Any]] = {}  # more status() sections (the config reloader's)
        self._models = ModelThread("models")
        self.controller = TurnController(TurnPolicy.from_config(self.config))
        self.clock = clock  # when speech starts, for the follow-up window (injected by tests)
        self.turn_start = load_turn_start(self.config.wake, self.config.persona.name, clock)
        self._unaddressed: tuple[str, float] | None = None  # the last utterance not for it, and where it ended
        self._speech_started_at = 0.0  # self.clock() at the latest start of speech
        self._turn_task: asyncio.Task | None = None  # the task of the last turn started
        self._speculation = SpeculativeTranscription(
            self._models,
            lambda x: self._transcriber().transcribe(x),
            self._heard_so_far,
            lambda x: self._transcriber().transcribe_partial(x),
        )
        self._audio_lost_because = ""  # the audio loop's error when the devices were last lost
        assert pipeline.tts is not None, "the daemon needs the tts stage"
        output_rate = self.config.audio.output_sample_rate or pipeline.tts.sample_rate
        partials = getattr(pipeline.transcriber, "incremental", False)  # (only where a call costs what audio does)
        self.audio = AudioLoop(self.config, output_rate, self, end_of_turn, partials=partials)
        self._turn_completion = TurnCompletion(self.audio.end_of_turn, bus.publish)
        self.transcripts = TranscriptLog() if self.config.privacy.save_transcripts else None
        self.alarms: AlarmRinger | None = None
        if pipeline.skills is not None:  # timers and reminders ring here, through the speaker
            pipeline.keep_alarms()
            assert pipeline.timers is not None and pipeline.reminders is not None
            self.alarms = AlarmRinger(
                pipeline.timers,
                pipeline.reminders,
                self.config.skills,
                announce=self.announce,
                idle=self._room_for_alarm,
                publish=bus.publish,
                publish_threadsafe=bus.publish_threadsafe,
            )
            loop = asyncio.get_running_loop()
            alarms = self.alarms
            pipeline.alarm_control = AlarmControl(
                ringing=lambda: alarms.ringing,
                silence=alarms.silence,
                mute=lambda: loop.call_soon_threadsafe(self.mute, True),  # "stop listening" (on the model thread)
            )

    def _transcriber(self) -> Transcriber:
        """The pipeline's transcriber now (a reload may replace it); the daemon loads every stage."""
        transcriber = self.pipeline.transcriber
        assert transcriber is not None, "the daemon needs the asr stage"
        return transcriber

    # -- state ---------------------------------------------------------------------------------------------------
    def set_state(self, state: str, detail: str = "") -> None:
        if (state, detail) == (self.state, self.state_detail):
            return
        self.state, self.state_detail = state, detail
        self.bus.publish(StateChanged(state, detail))
        if self.notifier is not None:
            self.notifier.status(f"{state}: {detail}" if detail else state)
        log.info("state: %s%s", state, f" ({detail})" if detail else "")

    # -- configuration -------------------------------------------------------------------------------------------
    @property
    def vad_options(self) -> VadOptions:
        """The endpointer's options in effect."""
        return self.audio.vad.options

    def use_config(self, config: Config, *, new_vad: bool = False, new_echo: bool = False) -> None:
        """Run on ``config`` from now on (a reload: voiceos.daemon.reload decides what may change live).

        Call it on the event loop, which feeds the endpointer and the echo stage: a new endpointer drops an
        utterance being spoken at that moment, and a new echo stage learns the echo path again.
        """
        self.config = self.pipeline.config = config
        self.audio.use_config(config, new_vad=new_vad, new_echo=new_echo)
        self.controller.use_policy(TurnPolicy.from_config(config), new_vad=new_vad)
        self.turn_start = load_turn_start(config.wake, config.persona.name, self.clock)
        if self.alarms is not None:
            self.alarms.options = config.skills

    # -- what the audio loop hears -------------------------------------------------------------------------------
    def on_audio_state(self, state: str, detail: str = "") -> None:
        if state == "muted":
            self.controller.drop_held()  # the utterance it was on is cut off
            self.set_state("muted", "the microphone is closed: voiceos unmute opens it")
            return
        if state == "open":
            self.set_state("speaking" if self.controller.phase is Phase.SPEAKING else "listening")
            return
        if state == "lost":
            self.controller.drop_held()  # no end of turn will come for its utterance
            self._audio_lost_because = self.audio.error  # a reconnect attempt overwrites audio.error at once
            self.interrupt_turn(AUDIO_LOST)
        self.set_state("no_audio", detail)

    def on_speech(self, events: list[VadEvent], voiced_s: float, users_voice_s: float | None = None) -> None:
        """The VAD's events go to the turn controller; what it decides is carried out here, event by event.
        ``users_voice_s``: of ``voiced_s``, what the echo stage judged the user's own (None: all of it)."""
        self.controller.users_voice_s = users_voice_s
        for event in events:
            if isinstance(event, SpeechStarted):
                self._speech_started_at = self.clock()  # (a follow-up counts from when the user began)
                if self.alarms is not None:
                    self.alarms.user_spoke()  # a ringing alarm was heard
            self._carry_out(self.controller.on_vad_event(event))
        self._carry_out(self.controller.on_voiced(voiced_s))

    def _heard_so_far(self, utterance: Utterance, transcript: Any) -> None:
        """(model thread) A partial transcript of the utterance the user is still speaking: published only when the
        utterance is known to be for the assistant before it ends (wake.mode always, or a follow-up); with the name
        rule its words stay unpublished, since it may turn out not to be (the name may come last)."""
        if transcript.text and self.turn_start.open_at(self._speech_started_at):
            self.bus.publish_threadsafe(PartialTranscriptEvent(transcript.text, stream_s=utterance.end_s))

    def _end_turn_at(self, span: tuple[float, float]) -> list[VadEvent]:
        return self.audio.vad.end_turn(span)  # the endpointer in use now (a reload may have replaced it)

    def _on_turn_ended(self, events: list[VadEvent]) -> None:
        self.on_speech(events, self.audio.vad.voiced_s, self.controller.users_voice_s)  # (as the last block had it)

    def _carry_out(self, actions: list[Action]) -> None:
        """Do what the controller decided (voiceos.daemon.turn_controller), in order."""
        for action in actions:
            match action:
                case Publish(event):
                    self.bus.publish(event)
                case TranscribePartial(utterance):
                    self._speculation.grow(utterance)
                case Speculate(utterance):
                    self._speculation.start(utterance)
                case DropSpeculation():
                    self._speculation.drop()
                    self._speculation.end_utterance()
                case CheckEndOfTurn(check):
                    words = self._speculation.peek(check.span)  # the pause's transcript, for turn.text_check
                    self._turn_completion.check(check, words, self._end_turn_at, self._on_turn_ended)
                case HoldReply(turn, utterance):
                    turn.speech_started_at = self._speech_started_at
                    transcription = self._speculation.peek((utterance.start_s, utterance.end_s))
                    span = (utterance.start_s, utterance.end_s)
                    self._start_task(turn, self._run_audio_turn(turn, utterance.samples, transcription, span=span))
                case CommitReply(turn, utterance, current):
                    self._speculation.claim(utterance)  # (the held reply has its transcription)
                    self._speculation.end_utterance()
                    if current:
                        self._turn_task = turn.task
                    turn.commit(self.bus.publish)
                    if current:
                        if not turn.speaking:
                            self.set_state("thinking")
                        log.info("the turn ended at the pause: its reply had a head start")
                case StartReply(turn, utterance, resumes):
                    turn.speech_started_at = self._speech_started_at
                    turn.words = asyncio.get_running_loop().create_future()
                    samples = None if utterance is None else utterance.samples
                    transcription = None if utterance is None else self._speculation.claim(utterance)
                    self._speculation.end_utterance()
                    heard_span = None if utterance is None else (utterance.start_s, utterance.end_s)
                    self._start_task(turn, self._run_audio_turn(turn, samples, transcription, resumes, span=heard_span))
                    self._turn_task = turn.task
                case Interrupted(turn, reason):
                    if reason == "barge-in":
                        echo = self.audio.echo.describe_last_user()
                        log.info("barge-in: the user speaks over the assistant (%s)", echo)
                    if turn.speaking:
                        self.interruptions += 1
                        self.audio.stop_playback()
                    log.info("turn interrupted (%s)", reason)

    def _start_task(self, turn: Turn, coro) -> None:
        loop = asyncio.get_running_loop()
        turn.done = loop.create_future()
        turn.task = loop.create_task(coro)

    def _end(self, turn: Turn, idle_states: tuple[str, ...] = ("thinking", "speaking")) -> None:
        """The one teardown of a turn, however it ended; the state goes back to listening from ``idle_states``."""
        if turn.words is not None and not turn.words.done():
            turn.words.set_result(None)  # cancelled, or failed: not known to be without words
        if turn.done is not None and not turn.done.done():
            turn.done.set_result(None)
        if self.controller.ended(turn) and self.state in idle_states:
            self.set_state(self._idle_state())

    def _idle_state(self) -> str:
        if self.audio.muted:
            return "muted"
        return "listening" if self.audio.microphone else "no_audio"

    def mute(self, muted: bool = True) -> None:
        """Close (or open again) the microphone stream (on the event loop)."""
        self.audio.set_muted(muted)

    # -- turns ---------------------------------------------------------------------------------------------------
    def interrupt_turn(self, reason: str) -> bool:
        """Stop the turn in progress: cancel the LM/TTS and cut playback at once."""
        actions = self.controller.interrupt_current(reason)
        self._carry_out(actions)
        return bool(actions)

    async def _run_audio_turn(
        self,
        turn: Turn,
        samples: np.ndarray | None,
        speculative: concurrent.futures.Future | None = None,
        resumes: Turn | None = None,
        *,
        span: tuple[float, float] | None = None,
    ) -> dict | None:
        """Transcribe an utterance and answer it. The turn exists from the end of speech on, so that the user
        speaking again during ASR or thinking cancels it and their words carry over to the next utterance.

        ``speculative`` is a transcription of the same samples started when the pause began (same input, same
        transcript); ``asr`` then counts only what is left of it after the end of the turn. Without ``samples``,
        the turn answers the words carried over from ``resumes``, a turn cut by speech that came to nothing."""
        loop = asyncio.get_running_loop()
        if not turn.is_held:
            self.set_state("thinking")
        try:
            start = time.perf_counter()
            used_speculation = speculative is not None and not speculative.cancelled()
            if samples is None:
                if resumes is not None and resumes.done is not None:
                    await asyncio.shield(resumes.done)  # its transcript lands in the carry-over, if still running
                heard = ""
            elif used_speculation and speculative is not None:
                heard = (await asyncio.wrap_future(speculative)).text.strip()
            else:
                transcriber = self._transcriber()
                heard = (await loop.run_in_executor(self._models, transcriber.transcribe, samples)).text.strip()
            turn.asr_done_at = time.perf_counter()
            asr_ms = (turn.asr_done_at - start) * 1000
            text = self.controller.transcribed(turn, heard)  # with words carried over; None: nothing to answer now
            if text is None:
                return None
            seconds = 0.0 if samples is None else len(samples) / SAMPLE_RATE
            request = self._addressed(text, heard, span, turn.speech_started_at)
            if turn.words is not None:
                turn.words.set_result(request or "")  # not for us: as good as no words (a cut say turn goes on)
            if not text:
                log.info("nothing intelligible in %.2f s of speech", seconds)
                return None
            if request is None:  # not for the assistant: no text is kept, logged or published, only that it was
                log.info("ignored %.1f s of speech: not addressed to the assistant", seconds)
                turn.publish(UtteranceIgnored(round(seconds, 2)), self.bus.publish)
                return None
            if not request:  # the name alone ("Milo?"): the user waits to be listened to
                self.turn_start.conversing()
                return await self._reply(turn, ACKNOWLEDGE, "microphone", None, notice=True)
            text = request
            timings = {
                "endpointing": float(self.config.vad.hangover_ms),
                "asr": asr_ms,
                "asr_ready": asr_ms,  # after the end of the turn (a head start's may be negative: turn.py)
                "asr_speculative": float(used_speculation),  # 1: transcribed during the end-of-turn silence
            }
            return await self.respond(text, "microphone", extra_timings=timings, turn=turn)
        finally:
            self._end(turn, ("thinking",))

    async def _wait_for_idle(self) -> None:
        """A new turn waits for the previous one (cancelled by now) to wind down: one turn at a time."""
        while (previous := self.controller.turn) is not None and previous.done is not None:
            if previous.done.done():
                break
            self._carry_out(self.controller.interrupt(previous, "a new turn"))
            await asyncio.shield(previous.done)

    async def respond(
        self, text: str, source: str, extra_timings: dict[str, float] | None = None, turn: Turn | None = None
    ) -> dict:
        """One reply to ``text``, spoken on the speaker (if any); returns the ``say --json`` object."""
        while True:
            if turn is None:
                await self._wait_for_idle()
                turn = Turn(text, source, done=asyncio.get_running_loop().create_future())
                self.controller.start(turn)
            data = await self._reply(turn, text, source, extra_timings)
            if data is not None:
                return data
            turn = None  # cut before it spoke by an utterance without words: answered after all, afresh

    def _addressed(
        self, text: str, heard: str, span: tuple[float, float] | None, started_at: float | None
    ) -> str | None:
        """What of ``text`` (``heard`` with any carried-over words before it) is for the assistant: the request
        without its name, or None. Carried-over words not addressed to it do not hide a request that is. An
        utterance just before, ended less than ``JOIN_UNADDRESSED_S`` earlier and not for the assistant on its own,
        is tried in front ("Milo ..." a pause "... what time is it?"); then forgotten either way."""
        before, self._unaddressed = self._unaddressed, None
        request = self.turn_start.accept(text, started_at)
        if request is None and heard != text:
            request = self.turn_start.accept(heard, started_at)
        if (
            request is None
            and before is not None
            and span is not None
            and 0 <= span[0] - before[1] < JOIN_UNADDRESSED_S
        ):
            request = self.turn_start.accept(f"{before[0]} {text}", started_at)
        if request is None and span is not None:
            self._unaddressed = (text, span[1])  # kept in memory for one more utterance, never logged
        return request

    async def _reply(
        self,
        turn: Turn,
        text: str,
        source: str,
        extra_timings: dict[str, float] | None,
        *,
        notice: bool = False,
    ) -> dict | None:
        """``turn``'s reply, written, spoken and heard; None when it is to be answered again (a false interruption).
        ``notice``: ``text`` is said as it is (an alarm, "Yes?"), not answered."""
        loop = asyncio.get_running_loop()
        turn.notice = notice
        turn.user_text = text
        turn.timings_ms.update(extra_timings or {})
        if not turn.is_held:
            self.set_state("thinking")
        if not notice:  # (a notice is no transcript of the user's)
            turn.publish(TranscriptEvent(text, source=source), self.bus.publish)
        again = False
        try:
            result = await loop.run_in_executor(
                self._models,
                reply_in_model_thread,
                self.pipeline,
                self.audio,
                turn,
                self.bus.publish_threadsafe,
                lambda played_at: loop.call_soon_threadsafe(self._speaking_started, turn, played_at),
            )
            if turn.is_held:  # a head start the user talked on over: nothing was heard or said
                return {}
            if turn.speaking and not turn.cancel.is_set():
                await wait_until_heard(self.audio, turn, result)
            again = await self._false_interruption(turn)
            return None if again else self._finish_turn(turn, result)
        except VoiceosError as err:
            turn.publish(ErrorEvent(str(err)), self.bus.publish)
            raise
        finally:
            self._end(turn, () if again else ("thinking", "speaking"))  # answered again: it stays "thinking"

    async def _false_interruption(self, turn: Turn) -> bool:
        """Was ``turn`` (say/listen) cut before it spoke by an utterance without words (a cough, a leak of its own
        echo)? Then it is answered after all, if nothing else has started meanwhile (LiveKit's "false
        interruption": here the cut reply had not been heard yet, so it starts again from the beginning)."""
        cutter = turn.cut_by
        if cutter is None or cutter.words is None or turn.speaking:
            return False
        words = await asyncio.shield(cutter.words)
        if words != "" or not self.controller.may_answer_again(turn):
            return False
        log.info("the utterance that cut the %s reply had no words: answering it after all", turn.source)
        return True

    def _speaking_started(self, speaker: Turn, played_at: float) -> None:
        """The model thread played the first chunk of ``speaker``'s reply (on the event loop, in order with the
        turn's other events: the reply's end is handled after this)."""
        self.controller.speaking_started(speaker, played_at)
        turn = self.controller.turn
        self.turn_start.conversing()  # the user may answer, or talk over it, without the name
        if turn is not None and not turn.cancel.is_set():
            self.set_state("speaking")
            self.bus.publish(SpeakingStarted())

    def _finish_turn(self, turn: Turn, result: TurnResult) -> dict:
        heard = heard_text(self.audio, turn, result)
        # Nothing heard: the user's words come back with the next utterance (carry-over). A notice is no exchange.
        if heard and not result.error and not turn.notice:
            self.pipeline.remember(turn.user_text, heard)
            if self.transcripts is not None:  # privacy.save_transcripts: exactly what the memory keeps
                label = (result.user_emotion or {}).get("label")
                self.transcripts.append(turn.source, turn.user_text, heard, label, turn.interrupted)
        self.turns += 1
        self.turn_start.conversing()  # what the user says next is a follow-up
        timings = turn.head_start_timings({**turn.timings_ms, **result.timings_ms})
        if turn.speaking:
            played = round(heard_seconds(self.audio, turn, result), 3)
            self.bus.publish(SpeakingEnded(interrupted=turn.interrupted, spoken_text=heard, audio_s=played))
        if turn.interrupted_by == AUDIO_LOST:  # a turn cut before it spoke would otherwise end without a word
            when = "while" if turn.speaking else "before"
            self.bus.publish(ErrorEvent(f"the audio stopped {when} the reply was spoken: {self._audio_lost_because}"))
        self.bus.publish(TimingsEvent(timings))
        data = result.as_json()
        data["timings_ms"] = rounded_timings(timings)
        data["interrupted"] = turn.interrupted
        data["interrupted_by"] = turn.interrupted_by
        data["spoken_text"] = heard
        data["audio"]["played"] = turn.speaking
        self._models.submit(release_free_memory)  # between turns, on the model thread (see daemon.heap)
        return data

    # -- control commands ----------------------------------------------------------------------------------------
    async def say(self, text: str) -> dict:
        return await self.respond(text, "say")

    async def announce(self, notice: str) -> dict | None:
        """Say a timer's or a reminder's notice (a chime, then the words) as a turn of its own; any voice over it
        cuts it (see TurnController). Returns when it was heard or cut."""
        await self._wait_for_idle()
        turn = Turn(notice, ALARM, done=asyncio.get_running_loop().create_future())
        self.controller.start(turn)
        return await self._reply(turn, notice, ALARM, None, notice=True)

    def _room_for_alarm(self) -> bool:
        """No turn runs and the user is not speaking: a notice may be said now."""
        return self.controller.phase is Phase.LISTENING and not self.audio.vad.in_speech

    async def listen(self, path: str) -> dict:
        loop = asyncio.get_running_loop()
        pipeline = self.pipeline
        if not Path(path).is_absolute():
            raise AudioInputError(f"{path}: give an absolute path (the daemon has its own working directory)")
        samples = await loop.run_in_executor(None, pipeline.read_speech, path)
        transcript, utterances, timings = await loop.run_in_executor(self._models, pipeline.find_speech, samples, path)
        data = await self.respond(transcript, "listen", timings)
        data["transcript"] = transcript
        data["segments"] = segments_json(utterances)
        return data

    async def reset(self) -> dict:
        messages = len(self.pipeline.history)
        self._carry_out(self.controller.reset())
        facts = self.pipeline.reset()
        return {"cleared_messages": messages, "cleared_facts": facts}

    async def close(self) -> None:
        self.interrupt_turn("shutdown")
        self.controller.drop_held()
        self.audio.close()
        self._turn_completion.close()
        self._models.close()
