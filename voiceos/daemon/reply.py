"""A turn's reply in the daemon: written and synthesized in the model thread, played as it comes, and what was heard.

The model thread runs :meth:`Pipeline.reply`; each synthesized chunk goes straight into the player's queue from there
(a held turn, the reply's head start, first waits for its commit). After the reply, the event loop waits until the
speaker has played it, or the turn was cut; the player's count of samples actually played says how far it got.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from voiceos.audio.files import resample
from voiceos.daemon.turn_state import Turn
from voiceos.emotion.labels import EmotionResult
from voiceos.errors import AudioDeviceError
from voiceos.events import ReplyDelta, UserEmotionEvent
from voiceos.pipeline import Pipeline, TurnResult

if TYPE_CHECKING:
    from voiceos.daemon.audio_loop import AudioLoop

log = logging.getLogger(__name__)
ALARM = "alarm"  # the source of a turn that says a timer's or a reminder's notice


def reply_in_model_thread(
    pipeline: Pipeline,
    audio: AudioLoop,
    turn: Turn,
    publish_threadsafe: Callable[[Any], None],
    on_speaking: Callable[[float], object],
) -> TurnResult:
    """Write and speak the reply to ``turn.user_text`` (in the model thread). ``audio`` is the daemon's audio loop
    (its ``player`` may come and go with the device); ``on_speaking(played_seconds)`` runs, from this thread, at the
    first chunk played, with the player's count then. This thread writes nothing of the turn's state: the event loop
    learns that the reply is speaking from that call (the controller's ``speaking_started``)."""
    player = audio.player
    assert pipeline.tts is not None, "the daemon needs the tts stage"
    voice_rate = pipeline.tts.sample_rate
    out_rate = player.sample_rate if player is not None else voice_rate
    turn.reply_started_at = time.perf_counter()
    started = False  # (this thread's own record: the turn's ``speaking`` is the event loop's to set)

    def on_audio(chunk: np.ndarray) -> None:
        nonlocal started
        if turn.is_held and not turn.wait_until_decided():  # a head start waits for the end of the turn
            return
        player = audio.player
        if turn.cancel.is_set() or player is None:
            return
        if not started:
            started = True
            on_speaking(player.played_seconds)
        if out_rate != voice_rate:
            chunk = resample(chunk, voice_rate, out_rate)
        try:
            player.write(chunk)
        except (RuntimeError, AudioDeviceError) as err:  # the device went away mid-reply
            log.warning("playback failed: %s", err)

    def on_delta(delta: str) -> None:
        turn.publish(ReplyDelta(delta), publish_threadsafe)

    def on_user_emotion(result: EmotionResult) -> None:
        turn.publish(UserEmotionEvent(result.label, result.as_json()["scores"]), publish_threadsafe)

    try:
        if turn.notice:  # said as it is: a timer's or a reminder's notice (after a chime), "Yes?" to its name
            return pipeline.announce(turn.user_text, on_audio=on_audio, cancel=turn.cancel, chime=turn.source == ALARM)
        return pipeline.reply(
            turn.user_text,
            on_audio=on_audio,
            remember=False,
            cancel=turn.cancel,
            decided=turn.wait_until_decided,  # a head start's effects wait for the end of the turn
            on_delta=on_delta,
            on_user_emotion=on_user_emotion,
        )
    finally:
        if turn.head_start:
            turn.wait_until_decided()  # a dropped one wrote nothing: another turn's audio may be playing
        if audio.player is not None and not turn.is_held:
            audio.player.finish()  # the queue running dry after the last sentence is the end, not a gap


async def wait_until_heard(audio: AudioLoop, turn: Turn, result: TurnResult) -> None:
    """Until the speaker has played the whole reply, the turn is cut, or the player changes (a lost device)."""
    player = audio.player
    if player is None:
        return
    total = result.audio_seconds
    deadline = time.monotonic() + total + player.latency + 10.0
    while not turn.cancel.is_set() and audio.player is player and time.monotonic() < deadline:
        if player.played_seconds - turn.played_at_start >= total - 0.01:
            return
        await asyncio.sleep(0.02)


def heard_seconds(audio: AudioLoop, turn: Turn, result: TurnResult) -> float:
    """Seconds of the reply the user heard: all of it, the played share of a cut one, or none."""
    if turn.interrupted and turn.speaking:
        player = audio.player
        played = (player.played_seconds if player else turn.played_at_start) - turn.played_at_start
        return max(0.0, min(played, result.audio_seconds))
    if turn.interrupted:
        return 0.0
    return result.audio_seconds


def heard_text(audio: AudioLoop, turn: Turn, result: TurnResult) -> str:
    """What the user heard of the reply: all of it, the played share of a cut one, or nothing."""
    if turn.interrupted and turn.speaking:
        return result.heard_text(int(heard_seconds(audio, turn, result) * result.sample_rate))
    if turn.interrupted:
        return ""
    return result.reply
