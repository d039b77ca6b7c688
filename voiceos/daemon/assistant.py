"""The live assistant: microphone -> VAD -> turn (ASR -> LM -> TTS) -> speaker, with barge-in and memory.

Threads and where work runs:

- PortAudio threads only copy audio (``Microphone`` callback in, ``ChunkPlayer`` callback out).
- The event loop resamples the microphone audio and runs the audio loop (:mod:`voiceos.daemon.audio_loop`: echo gate
  and VAD, microseconds per frame), publishes events and decides here, on the VAD's events, about turns and
  interruptions.
- One model thread (a single-worker executor) runs ASR, the LM and TTS, so the models never fight for the two
  cores; synthesized audio goes straight from there into the player's queue, sentence by sentence.

A turn (:mod:`voiceos.daemon.turn`) is cancelled through a ``threading.Event`` the model thread checks between
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

from voiceos import __version__
from voiceos.config import Config, VadOptions
from voiceos.daemon.audio_loop import SAMPLE_RATE, AudioLoop
from voiceos.daemon.bus import EventBus
from voiceos.daemon.end_of_turn import TurnCompletion
from voiceos.daemon.interruption import MinSpeechInterruption
from voiceos.daemon.reply import heard_seconds, heard_text, reply_in_model_thread, wait_until_heard
from voiceos.daemon.speculation import SpeculativeTranscription
from voiceos.daemon.turn import HeadStart, Turn
from voiceos.errors import AudioInputError, VoiceosError
from voiceos.events import (
    ErrorEvent,
    SpeakingEnded,
    SpeakingStarted,
    SpeechEndedEvent,
    SpeechStartedEvent,
    StateChanged,
    TimingsEvent,
    TranscriptEvent,
)
from voiceos.memory.store import memory_command
from voiceos.pipeline import Pipeline, TurnResult
from voiceos.privacy import TranscriptLog
from voiceos.turn import EndOfTurn
from voiceos.vad import SpeechDiscarded, SpeechEnded, SpeechPaused, SpeechStarted, TurnCheck, VadEvent

log = logging.getLogger(__name__)
AUDIO_LOST = "audio lost"  # why a turn is interrupted when the devices go away


class Assistant:
    """Owns the pipeline, the audio devices and the conversation state; the control socket drives it too."""

    def __init__(
        self, pipeline: Pipeline, bus: EventBus, *, notifier: Any = None, end_of_turn: EndOfTurn | None = None
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
        self._models = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="voiceos-models")
        self._turn: Turn | None = None
        self._turn_task: asyncio.Task | None = None
        self._carry_over = ""  # user text of a turn cut before it spoke: the user was not done talking
        self._cut_by_speech: Turn | None = None  # that turn, until the speech that cut it ends or is discarded
        self._head_start: HeadStart | None = None
        self._speculation = SpeculativeTranscription(self._models, lambda x: self.pipeline.transcriber.transcribe(x))
        self._barge_in: MinSpeechInterruption[Turn] = MinSpeechInterruption(self.config.audio.barge_in_min_ms)
        self._audio_lost_because = ""  # the audio loop's error when the devices were last lost
        output_rate = self.config.audio.output_sample_rate or pipeline.tts.sample_rate
        self.audio = AudioLoop(self.config, output_rate, self, end_of_turn)
        self._turn_completion = TurnCompletion(self.audio.end_of_turn, bus.publish)
        self.transcripts = TranscriptLog() if self.config.privacy.save_transcripts else None

    # -- state ---------------------------------------------------------------------------------------------------
    def set_state(self, state: str, detail: str = "") -> None:
        if (state, detail) == (self.state, self.state_detail):
            return
        self.state, self.state_detail = state, detail
        self.bus.publish(StateChanged(state, detail))
        if self.notifier is not None:
            self.notifier.status(f"{state}: {detail}" if detail else state)
        log.info("state: %s%s", state, f" ({detail})" if detail else "")

    def status(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "state": self.state,
            "detail": self.state_detail,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "devices": {
                "input": self.audio.microphone.name if self.audio.microphone else None,
                "output": self.audio.output_name(),
                "error": self.audio.error or None,
                "lost": self.audio.lost,
            },
            "models": {
                "asr": p.config.asr.model,
                "lm": getattr(p.lm, "name", p.config.dialogue.model),
                "voice": p.voice.name if p.voice else p.config.tts.voice,
                "device": p.plan.torch_device if hasattr(p.plan, "torch_device") else str(p.plan),
            },
            "turns": self.turns,
            "interruptions": self.interruptions,
            "history_messages": len(p.history),
            "barge_in": self.config.audio.barge_in,
            "end_of_turn": self.audio.end_of_turn.name,
            "echo": self.audio.echo.mode,  # aec, gate (livekit missing) or off
            **{name: section() for name, section in self.extra_status.items()},
            "audio_faults": self.audio.faults(),
        }

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
        min_changed = config.audio.barge_in_min_ms != self.config.audio.barge_in_min_ms
        self.config = self.pipeline.config = config
        self.audio.use_config(config, new_vad=new_vad, new_echo=new_echo)
        if new_vad:
            self._drop_head_start()  # its utterance is gone with the old endpointer
        if new_vad or min_changed:  # else speech over the reply at this moment keeps its place in the policy
            self._barge_in = MinSpeechInterruption(config.audio.barge_in_min_ms)

    # -- what the audio loop hears -------------------------------------------------------------------------------
    def on_audio_state(self, state: str, detail: str = "") -> None:
        if state == "open":
            self.set_state("speaking" if self._turn and self._turn.speaking else "listening")
            return
        if state == "lost":
            self._drop_head_start()  # no end of turn will come for its utterance
            self._audio_lost_because = self.audio.error  # a reconnect attempt overwrites audio.error at once
            self.interrupt_turn(AUDIO_LOST)
        self.set_state("no_audio", detail)

    def on_speech(self, events: list[VadEvent], voiced_s: float) -> None:
        """Turns start and end here; speech over the reply interrupts it once the barge-in policy says so."""
        for event in events:
            if isinstance(event, SpeechStarted):
                self.bus.publish(SpeechStartedEvent(stream_s=event.time_s))
                self._user_started_speaking()
            elif isinstance(event, SpeechPaused):
                self._drop_head_start()
                transcription = self._speculation.start(event.utterance)
                self._start_head_start(event.utterance, transcription)
            elif isinstance(event, TurnCheck):  # is the user done? A "complete" ends the utterance in the VAD
                words = self._speculation.peek(event.span)  # the pause's transcript, for turn.text_check
                self._turn_completion.check(event, words, self._end_turn_at, self._on_turn_ended)
            elif isinstance(event, SpeechEnded):
                utt = event.utterance
                if self._barge_in.ended(utt.voiced_s):
                    log.info("ignored %.2f s of voice over the reply: too short to interrupt it", utt.voiced_s)
                    self._speculation.drop()  # its transcription would queue behind the reply
                    self._drop_head_start()
                    continue
                self.bus.publish(SpeechEndedEvent(stream_s=utt.end_s, seconds=utt.duration_s, forced=event.forced))
                self._cut_by_speech = None  # its words join this utterance
                head = self._take_head_start((utt.start_s, utt.end_s))
                if head is not None:  # the reply started at the pause: it may play now
                    self._speculation.claim(utt)  # (the head start has its transcription)
                    self._commit_head_start(head)
                    continue
                # The turn exists from this moment on, so that speech starting again in this same batch of frames
                # (a forced cut at max_utterance_s) finds it and carries its words over to the next utterance.
                turn = self._begin_audio_turn()
                self._start_turn(self._run_audio_turn(turn, utt.samples, self._speculation.claim(utt)))
            elif isinstance(event, SpeechDiscarded):
                self._drop_head_start()
                self._barge_in.ended(0.0)
                log.debug("discarded a %.2f s blip", event.end_s - event.start_s)
                self._resume_cut_turn()
        interrupted = self._barge_in.due(voiced_s)
        # Only the reply still in progress: one that ended on its own meanwhile has nothing left to cut.
        if interrupted is not None and interrupted is self._turn and not interrupted.cancel.is_set():
            log.info("barge-in: the user speaks over the assistant (%s)", self.audio.echo.describe_last_user())
            self._interrupt(interrupted, "barge-in")

    def _end_turn_at(self, span: tuple[float, float]) -> list[VadEvent]:
        return self.audio.vad.end_turn(span)  # the endpointer in use now (a reload may have replaced it)

    def _on_turn_ended(self, events: list[VadEvent]) -> None:
        self.on_speech(events, self.audio.vad.voiced_s)

    def _user_started_speaking(self) -> None:
        turn = self._turn
        if turn is None or turn.cancel.is_set() or not self.config.audio.barge_in:
            return
        if turn.speaking:
            self._barge_in.started_over(turn)  # interrupts once the user has said enough: see _on_mic_audio
        elif turn.source == "microphone":
            # The end of turn came too early: the user goes on. Their words so far join the next utterance.
            self._cut_turn(turn, "the user is still talking")
            self._cut_by_speech = turn

    def _resume_cut_turn(self) -> None:
        """The speech that cut a turn was only a blip (a cough, a click): answer the cut turn's words after all,
        instead of keeping them until the user speaks again."""
        cut, self._cut_by_speech = self._cut_by_speech, None
        if cut is None or (self._turn is not None and self._turn is not cut):
            return
        log.info("the speech that cut the last turn was a blip: answering that turn's words now")
        turn = self._begin_audio_turn()
        self._start_turn(self._run_audio_turn(turn, None, resumes=cut))

    def _cut_turn(self, turn: Turn, reason: str) -> None:
        """Cancel ``turn``; a microphone turn that had not spoken yet hands the user's words to the next utterance.
        (Words still being transcribed carry over when their transcript arrives, in ``_run_audio_turn``.)"""
        unspoken = turn.source == "microphone" and not turn.speaking
        if self._interrupt(turn, reason) and unspoken and turn.user_text:
            self._carry_over = f"{self._carry_over} {turn.user_text}".strip()

    # -- the reply's head start (voiceos.daemon.turn) -------------------------------------------------------------
    def _start_head_start(self, utterance: Any, transcription: concurrent.futures.Future) -> None:
        """The user paused: answer what they said so far in a held turn (only while no other turn runs)."""
        config = self.config
        if not config.vad.speculate_reply or config.runtime.sequential or self._turn is not None:
            return
        if self._carry_over or self._cut_by_speech is not None:  # words of a cut turn would join this one
            return
        hold_s = config.vad.max_utterance_s + config.vad.hangover_ms / 1000  # the VAD decides well before this
        turn = Turn.held("microphone", asyncio.get_running_loop().create_future(), max_hold_s=hold_s)
        task = asyncio.get_running_loop().create_task(self._run_audio_turn(turn, utterance.samples, transcription))
        self._head_start = HeadStart((utterance.start_s, utterance.end_s), turn, task)

    def _take_head_start(self, span: tuple[float, float]) -> HeadStart | None:
        """The held turn of the utterance that just ended with exactly these samples; any other is dropped."""
        head = self._head_start
        if head is not None and head.span == span and not head.turn.cancel.is_set():
            self._head_start = None
            return head
        self._drop_head_start()
        return None

    def _drop_head_start(self) -> None:
        """The user went on talking (or the endpointer changed): the held turn ends unheard, leaving no trace."""
        head, self._head_start = self._head_start, None
        if head is not None and head.turn.is_held:
            head.turn.cancel.set()
            log.debug("reply head start dropped: the user went on")

    def _commit_head_start(self, head: HeadStart) -> None:
        turn = head.turn
        if head.task.done():  # it found nothing to answer (no words in the audio): the turn is over already
            turn.commit(self.bus.publish)
            return
        previous, self._turn = self._turn, turn
        self._turn_task = head.task
        if previous is not None:
            self._cut_turn(previous, "a new utterance")
        turn.commit(self.bus.publish)
        if not turn.speaking:
            self.set_state("thinking")
        log.info("the turn ended at the pause: its reply had a head start")

    # -- turns ---------------------------------------------------------------------------------------------------
    def _start_turn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._turn_task = task
        return task

    def interrupt_turn(self, reason: str) -> bool:
        """Stop the turn in progress: cancel the LM/TTS and cut playback at once."""
        return self._turn is not None and self._interrupt(self._turn, reason)

    def _interrupt(self, turn: Turn, reason: str) -> bool:
        if turn.cancel.is_set():
            return False
        turn.cancel.set()
        turn.interrupted, turn.interrupted_by = True, reason
        if turn.speaking:
            self.interruptions += 1
            self.audio.stop_playback()
        log.info("turn interrupted (%s)", reason)
        return True

    def _begin_audio_turn(self) -> Turn:
        """The turn of an utterance that just ended; a previous turn still thinking is cut, its words kept (a
        say/listen turn learns which utterance cut it: if that had no words, it is answered after all)."""
        loop = asyncio.get_running_loop()
        turn = Turn("", "microphone", done=loop.create_future(), words=loop.create_future())
        previous, self._turn = self._turn, turn
        if previous is not None:
            if previous.source != "microphone" and not previous.speaking and not previous.cancel.is_set():
                previous.cut_by = turn
            self._cut_turn(previous, "a new utterance")
        return turn

    async def _run_audio_turn(
        self,
        turn: Turn,
        samples: np.ndarray | None,
        speculative: concurrent.futures.Future | None = None,
        resumes: Turn | None = None,
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
                text = ""
            elif used_speculation:
                text = (await asyncio.wrap_future(speculative)).text.strip()
            else:
                transcriber = self.pipeline.transcriber
                text = (await loop.run_in_executor(self._models, transcriber.transcribe, samples)).text.strip()
            turn.asr_done_at = time.perf_counter()
            asr_ms = (turn.asr_done_at - start) * 1000
            if turn.is_held and turn.cancel.is_set():  # a dropped head start: no carry-over, no trace
                return None
            if self._carry_over and not turn.head_start:  # (none was waiting when a head start began)
                text, self._carry_over = f"{self._carry_over} {text}".strip(), ""
            if turn.cancel.is_set():  # the user went on talking: this is the start of their next utterance
                self._carry_over = text
                return None
            if turn.words is not None:
                turn.words.set_result(text)
            if not text:
                log.info(
                    "nothing intelligible in %.2f s of speech", 0 if samples is None else len(samples) / SAMPLE_RATE
                )
                return None
            timings = {
                "endpointing": float(self.config.vad.hangover_ms),
                "asr": asr_ms,
                "asr_speculative": float(used_speculation),  # 1: transcribed during the end-of-turn silence
            }
            return await self.respond(text, "microphone", extra_timings=timings, turn=turn)
        finally:
            if turn.words is not None and not turn.words.done():
                turn.words.set_result(None)  # cancelled, or failed: not known to be without words
            if not turn.done.done():
                turn.done.set_result(None)
            if self._turn is turn:
                self._turn = None
                if self.state == "thinking":
                    self.set_state("listening" if self.audio.microphone else "no_audio")

    async def _wait_for_idle(self, keep: Turn | None = None) -> None:
        """A new turn waits for the previous one (cancelled by now) to wind down: one turn at a time."""
        while self._turn is not None and self._turn is not keep and self._turn.done is not None:
            previous = self._turn
            if previous.done.done():
                break
            self._interrupt(previous, "a new turn")
            await asyncio.shield(previous.done)

    async def respond(
        self, text: str, source: str, extra_timings: dict[str, float] | None = None, turn: Turn | None = None
    ) -> dict:
        """One reply to ``text``, spoken on the speaker (if any); returns the ``say --json`` object."""
        loop = asyncio.get_running_loop()
        if turn is None:
            await self._wait_for_idle()
            turn = Turn(text, source, done=loop.create_future())
            self._turn = turn
        turn.user_text = text
        turn.timings_ms.update(extra_timings or {})
        if not turn.is_held:
            self.set_state("thinking")
        turn.publish(TranscriptEvent(text, source=source), self.bus.publish)
        try:
            result = await loop.run_in_executor(
                self._models,
                reply_in_model_thread,
                self.pipeline,
                self.audio,
                turn,
                self.bus.publish_threadsafe,
                lambda: loop.call_soon_threadsafe(self._speaking_started),
            )
            if turn.is_held:  # a head start the user talked on over: nothing was heard or said
                return {}
            if turn.speaking and not turn.cancel.is_set():
                await wait_until_heard(self.audio, turn, result)
            if await self._false_interruption(turn):
                return await self.respond(text, source, extra_timings)
            return self._finish_turn(turn, result)
        except VoiceosError as err:
            turn.publish(ErrorEvent(str(err)), self.bus.publish)
            raise
        finally:
            if not turn.done.done():
                turn.done.set_result(None)
            if self._turn is turn:
                self._turn = None
                if self.state in ("thinking", "speaking"):
                    self.set_state("listening" if self.audio.microphone else "no_audio")

    async def _false_interruption(self, turn: Turn) -> bool:
        """Was ``turn`` (say/listen) cut before it spoke by an utterance without words (a cough, a leak of its own
        echo)? Then it is answered after all, if nothing else has started meanwhile (LiveKit's "false
        interruption": here the cut reply had not been heard yet, so it starts again from the beginning)."""
        cutter = turn.cut_by
        if cutter is None or cutter.words is None or turn.speaking:
            return False
        words = await asyncio.shield(cutter.words)
        if words != "" or (self._turn is not None and self._turn is not turn):
            return False
        log.info("the utterance that cut the %s reply had no words: answering it after all", turn.source)
        if not turn.done.done():
            turn.done.set_result(None)
        if self._turn is turn:
            self._turn = None
        return True

    def _speaking_started(self) -> None:
        if self._turn is not None and not self._turn.cancel.is_set():
            self.set_state("speaking")
            self.bus.publish(SpeakingStarted())

    def _finish_turn(self, turn: Turn, result: TurnResult) -> dict:
        heard = heard_text(self.audio, turn, result)
        if heard:  # else nothing was heard: the user's words come back with the next utterance (carry-over)
            self.pipeline.remember(turn.user_text, heard)
            if self.transcripts is not None:  # privacy.save_transcripts: exactly what the memory keeps
                label = (result.user_emotion or {}).get("label")
                self.transcripts.append(turn.source, turn.user_text, heard, label, turn.interrupted)
        self.turns += 1
        timings = turn.head_start_timings({**turn.timings_ms, **result.timings_ms})
        if turn.speaking:
            played = round(heard_seconds(self.audio, turn, result), 3)
            self.bus.publish(SpeakingEnded(interrupted=turn.interrupted, spoken_text=heard, audio_s=played))
        if turn.interrupted_by == AUDIO_LOST:  # a turn cut before it spoke would otherwise end without a word
            when = "while" if turn.speaking else "before"
            self.bus.publish(ErrorEvent(f"the audio stopped {when} the reply was spoken: {self._audio_lost_because}"))
        self.bus.publish(TimingsEvent(timings))
        data = result.as_json()
        data["timings_ms"] = {k: round(v, 1) for k, v in timings.items()}
        data["interrupted"] = turn.interrupted
        data["interrupted_by"] = turn.interrupted_by
        data["spoken_text"] = heard
        data["audio"]["played"] = turn.speaking
        return data

    # -- control commands ----------------------------------------------------------------------------------------
    async def say(self, text: str) -> dict:
        return await self.respond(text, "say")

    async def listen(self, path: str) -> dict:
        loop = asyncio.get_running_loop()
        pipeline = self.pipeline
        if not Path(path).is_absolute():
            raise AudioInputError(f"{path}: give an absolute path (the daemon has its own working directory)")
        samples = await loop.run_in_executor(None, pipeline.read_speech, path)
        transcript, utterances, timings = await loop.run_in_executor(self._models, pipeline.find_speech, samples, path)
        data = await self.respond(transcript, "listen", timings)
        data["transcript"] = transcript
        data["segments"] = [{"start_s": round(u.start_s, 3), "end_s": round(u.end_s, 3)} for u in utterances]
        return data

    async def interrupt(self) -> dict:
        return {"interrupted": self.interrupt_turn("interrupt command")}

    async def reset(self) -> dict:
        messages = len(self.pipeline.history)
        self.interrupt_turn("reset")
        self._drop_head_start()
        facts = self.pipeline.reset()
        self._carry_over = ""
        return {"cleared_messages": messages, "cleared_facts": facts}

    async def memory(self, remove: object = None) -> dict:
        return memory_command(self.pipeline.memory, remove)

    def subscribe(self):
        return self.bus.subscribe()

    async def close(self) -> None:
        self.interrupt_turn("shutdown")
        self._drop_head_start()
        self.audio.close()
        self._turn_completion.close()
        self._models.shutdown(wait=False, cancel_futures=True)
