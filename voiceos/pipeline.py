"""One turn of conversation, wired once and used by every entry point (say, listen, bench, the daemon).

The stages overlap inside a turn: LM text deltas go through the sentence chunker, and each finished sentence is
synthesized and handed to ``on_audio`` while the LM goes on writing the next one.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voiceos.alarms.chime import chime as alarm_chime
from voiceos.asr import SAMPLE_RATE, Transcriber, Transcript, load_transcriber
from voiceos.audio.files import read_audio
from voiceos.clock import Clock, SystemClock
from voiceos.config import Config
from voiceos.dialogue.backend import DialogueBackend, load_dialogue
from voiceos.dialogue.persona import persona_prompt, user_name
from voiceos.emotion.labels import EmotionResult
from voiceos.errors import AudioInputError, TextInputError
from voiceos.memory import Fact, MemoryStore, memory_path
from voiceos.memory.facts import extract_facts
from voiceos.models import DevicePlan, plan_for
from voiceos.privacy import redact
from voiceos.reply import SERVER_APOLOGY, DialogueOutcome, ReplySpeaker, SentenceSpan, speak_dialogue_reply
from voiceos.reply.speaker import ms_since
from voiceos.skills import AlarmControl, SkillContext, SkillReply, SkillResponder
from voiceos.text.chunker import SentenceChunker
from voiceos.tts import TtsEngine, load_engine
from voiceos.tts.voices import VoiceProfile, load_voice
from voiceos.vad import Utterance, segment

if TYPE_CHECKING:
    from voiceos.alarms import ReminderBook, TimerBoard

log = logging.getLogger(__name__)

AudioSink = Callable[[np.ndarray], None]
STAGES = ("asr", "lm", "tts")
CHARS_PER_TOKEN_MAX = 8  # generous: English BPE tokens average ~4 characters
__all__ = ["SERVER_APOLOGY", "ListenResult", "Pipeline", "SentenceSpan", "TurnResult", "clean_text"]


@dataclass
class TurnResult:
    """What one spoken reply produced; :meth:`as_json` is the shape of ``voiceos say --json``."""

    input: str
    reply: str
    sentences: list[str]
    audio: np.ndarray
    sample_rate: int
    timings_ms: dict[str, float]
    user_emotion: dict = field(default_factory=lambda: {"label": "neutral", "scores": {}})
    reply_emotion: str = "neutral"
    audio_path: str | None = None
    spans: list[SentenceSpan] = field(default_factory=list)
    cancelled: bool = False
    learnt: list[Fact] = field(default_factory=list)  # facts about the user taken from this turn (new or corrected)
    error: str | None = None  # the dialogue server's failure, when the reply is the apology
    skill: str | None = None  # the intent a skill answered (None: the dialogue LM wrote the reply)
    dropped: dict[str, int] = field(default_factory=dict)  # LM sentences a guard kept from being said, by guard

    def heard_text(self, samples_played: int) -> str:
        """The part of the reply a listener heard when playback stopped after ``samples_played`` samples.

        Whole sentences up to that point, then the share of the next sentence's words that its played audio covers.
        """
        words: list[str] = []
        for span in self.spans:
            if samples_played >= span.end:
                words.extend(span.text.split())
                continue
            if samples_played > span.start and span.end > span.start:
                parts = span.text.split()
                words.extend(parts[: int(len(parts) * (samples_played - span.start) / (span.end - span.start))])
            break
        return " ".join(words)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / self.sample_rate if self.sample_rate else 0.0

    def as_json(self) -> dict:
        return {
            "input": self.input,
            "user_emotion": self.user_emotion,
            "reply": self.reply,
            "reply_emotion": self.reply_emotion,
            "audio": {
                "path": self.audio_path,
                "seconds": round(self.audio_seconds, 3),
                "sample_rate": self.sample_rate,
            },
            "timings_ms": rounded_timings(self.timings_ms),
            "skill": self.skill,
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class ListenResult:
    transcript: str
    segments: list[Utterance]
    turn: TurnResult

    def as_json(self) -> dict:
        data = self.turn.as_json()
        data["transcript"] = self.transcript
        data["segments"] = segments_json(self.segments)
        return data


def rounded_timings(timings_ms: Mapping[str, float]) -> dict[str, float]:
    """A turn's timings as every output reports them (JSON, events): milliseconds to a tenth."""
    return {k: round(v, 1) for k, v in timings_ms.items()}


def segments_json(utterances: Iterable[Utterance]) -> list[dict[str, float]]:
    """Where speech was found in a recording, as every output reports it: seconds to the millisecond."""
    return [{"start_s": round(u.start_s, 3), "end_s": round(u.end_s, 3)} for u in utterances]


def clean_text(text: str, max_chars: int) -> str:
    """Validate what the user said: control characters dropped, whitespace collapsed, empty or too long refused."""
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise TextInputError("empty text: say something for the assistant to answer")
    if len(cleaned) > max_chars:
        raise TextInputError(
            f"text is {len(cleaned)} characters, over the limit of {max_chars} (limits.max_text_chars)"
        )
    return cleaned


class Pipeline:
    """The loaded stages plus the conversation history; built once per process."""

    def __init__(
        self,
        config: Config,
        plan: DevicePlan,
        *,
        transcriber: Transcriber | None = None,
        lm: DialogueBackend | None = None,
        tts: TtsEngine | None = None,
        voice: VoiceProfile | None = None,
        skills: SkillResponder | None = None,
    ) -> None:
        self.config = config
        self.plan = plan
        self.transcriber = transcriber
        self.lm = lm
        self.tts = tts
        self.voice = voice
        self.history: list[dict[str, str]] = []
        # what the user tells about themselves: for the conversation, or on disk too with privacy.remember
        self.memory = MemoryStore(memory_path() if config.privacy.remember else None)
        # requests answered without the LM (voiceos.skills); None: every turn goes to the LM
        self.skills = skills
        self.clock: Clock = SystemClock()
        self.timers: TimerBoard | None = None  # kept by a process that lives on to ring them (keep_alarms)
        self.reminders: ReminderBook | None = None
        self.alarm_control = AlarmControl()  # what rings them sets it (the daemon)
        self.last_reply = ""  # what the assistant said last ("say that again")

    @classmethod
    def load(cls, config: Config, stages: Iterable[str] = STAGES, warm: bool = True) -> Pipeline:
        """Load the named stages (a subset of asr, lm, tts); the voice profile is checked before any model loads."""
        stages = set(stages)
        plan = plan_for(config)
        voice = load_voice(config.tts.voice, config.tts.voices_dir) if "tts" in stages else None
        if config.runtime.threads:
            import torch

            torch.set_num_threads(config.runtime.threads)
        pipeline = cls(config, plan, voice=voice)
        if config.skills.enabled:
            pipeline.skills = SkillResponder(config.skills)
        from tqdm import tqdm

        with tqdm(total=len(stages), desc="loading models", unit="model", leave=False, disable=None) as bar:
            if "asr" in stages:
                bar.set_postfix_str(f"{config.asr.engine} {config.asr.model}")
                pipeline.transcriber = load_transcriber(config.asr, plan)
                bar.update()
            if "lm" in stages:
                bar.set_postfix_str(f"dialogue LM {config.dialogue.model}")
                pipeline.lm = load_dialogue(config.dialogue, plan, emotion=config.emotion.enabled)
                pipeline.attach_emotion_head()
                bar.update()
            if voice is not None:  # loaded with the tts stage
                bar.set_postfix_str(f"voice {voice.name}")
                pipeline.tts = load_engine(voice, plan)
                bar.update()
        if warm:
            pipeline.warm()
        return pipeline

    def attach_emotion_head(self) -> None:
        """Load ``emotion.checkpoint`` onto the LM (when enabled) and check the policy against the voice."""
        options = self.config.emotion
        if not options.enabled or self.lm is None:
            return
        from voiceos.emotion.classifier import load_head

        head, labels = load_head(options.checkpoint)
        self.lm.attach_emotion_head(head, labels)
        if self.voice is not None:
            known = set(self.voice.emotion_names)
            for label in labels:
                wanted = options.policy.voice_for(label)
                if wanted not in known:
                    name = self.voice.name
                    log.warning("emotion.policy.%s: voice %s has no %r table; it speaks neutral", label, name, wanted)

    def warm(self) -> None:
        """Pay lazy initialisation costs at start-up, not on the first turn."""
        if self.transcriber is not None:
            self.transcriber.warm()
        if self.tts is not None:
            self.tts.warm()
        if self.skills is not None:
            self.skills.warm()

    # -- text in, speech out -------------------------------------------------------------------------------------
    def reply(
        self,
        text: str,
        on_audio: AudioSink | None = None,
        remember: bool = True,
        *,
        cancel: threading.Event | None = None,
        decided: Callable[[], bool] | None = None,
        on_delta: Callable[[str], None] | None = None,
        on_sentence: Callable[[str], None] | None = None,
        on_user_emotion: Callable[[EmotionResult], None] | None = None,
    ) -> TurnResult:
        """Answer ``text`` in speech: a skill's answer when one takes it, else the dialogue LM's. Each synthesized
        sentence goes to ``on_audio`` as soon as it exists; ``on_sentence`` gets each sentence as it is said.

        The turn *stands* once its first audio was handed out (or, with none, at the end), unless it was cancelled
        first, or ``decided()`` (the daemon: blocks while the turn is a speculative head start) says it was dropped.
        Only then do its effects happen: a skill's action (a timer starts), the facts the user told are learnt.
        Setting ``cancel`` (from any thread) stops the LM and the synthesis at the next token or audio chunk; the
        result then has ``cancelled`` set and nothing is remembered (the caller knows what was heard).
        """
        user_text = clean_text(text, self.config.limits.max_text_chars)
        start = time.perf_counter()
        timings: dict[str, float] = {}
        told = extract_facts(user_text)  # learnt when the turn stands; the reply may use them already
        skill = self.skills.answer(user_text, self.skill_context()) if self.skills is not None else None
        if skill is None:
            assert self.lm is not None, "reply() needs the lm stage (and tts, to speak: without it, text only)"
        effects = _TurnEffects(self, skill, told, cancel, decided)
        speaker = ReplySpeaker(
            self.tts,
            self.config,
            start=start,
            timings=timings,
            on_audio=on_audio,
            cancel=cancel,
            on_first_audio=effects.stand,
            on_sentence=on_sentence,
        )
        outcome = DialogueOutcome({"label": "neutral", "scores": {}})
        if skill is not None:
            timings["skill"] = ms_since(start)
            if on_delta is not None and skill.speech:
                on_delta(skill.speech)
            for sentence in split_sentences(skill.speech):
                speaker.say(sentence)
        else:
            assert self.lm is not None
            outcome = speak_dialogue_reply(
                self.lm,
                self.config,
                speaker,
                history=self.history,
                user_text=user_text,
                system_prompt=self.system_prompt(told),
                name_of_user=user_name(self.memory.facts_with(told)),
                on_delta=on_delta,
                on_user_emotion=on_user_emotion,
            )
        speaker.finish()
        effects.stand()  # no audio was handed out (a text reply, or nothing to say): the turn stands now
        timings["total"] = ms_since(start)

        reply = " ".join(speaker.sentences)
        was_cancelled = speaker.cancelled
        if remember and not was_cancelled and outcome.error is None:  # (an apology is not an answer to remember)
            self.remember(user_text, reply)
        if reply and not was_cancelled:
            self.last_reply = reply
        show = self.config.privacy.log_transcripts
        log.info(
            "turn: %s -> %s, %d sentences, %.0f ms%s%s",
            redact(user_text, show),
            redact(reply, show),
            len(speaker.spans),
            timings["total"],
            f" (skill {skill.intent})" if skill is not None else "",
            " (cancelled)" if was_cancelled else "",
        )
        return TurnResult(
            user_text,
            reply,
            speaker.sentences,
            speaker.audio(),
            speaker.sample_rate,
            timings,
            user_emotion=outcome.user_emotion,
            reply_emotion=speaker.emotion,
            spans=speaker.spans,
            cancelled=was_cancelled,
            learnt=effects.learnt,
            error=outcome.error,
            skill=skill.intent if skill is not None else None,
            dropped=outcome.dropped,
        )

    def announce(
        self,
        notice: str,
        on_audio: AudioSink | None = None,
        *,
        cancel: threading.Event | None = None,
        chime: bool = True,
    ) -> TurnResult:
        """Say ``notice`` (a timer is done, a reminder is due) after a short chime: through the same speech path as
        a reply, but nobody asked, so nothing is remembered as a conversation turn."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        speaker = ReplySpeaker(self.tts, self.config, start=start, timings=timings, on_audio=on_audio, cancel=cancel)
        if chime and self.tts is not None:
            speaker.play(alarm_chime(self.tts.sample_rate))
        for sentence in split_sentences(notice):
            speaker.say(sentence)
        speaker.finish()
        timings["total"] = ms_since(start)
        said = " ".join(s for s in speaker.sentences if s)
        if said and not speaker.cancelled:
            self.last_reply = said
        return TurnResult(
            "",
            said,
            [s for s in speaker.sentences if s],
            speaker.audio(),
            speaker.sample_rate,
            timings,
            spans=speaker.spans,
            cancelled=speaker.cancelled,
            skill="alarm",
        )

    def skill_context(self) -> SkillContext:
        """What the skills may read and change in this turn."""
        return SkillContext(
            self.clock,
            self.config.skills,
            self.memory,
            timers=self.timers,
            reminders=self.reminders,
            alarms=self.alarm_control,
            last_reply=self.last_reply,
        )

    def keep_alarms(self, clock: Clock | None = None) -> None:
        """This process lives on and can ring: keep timers (in memory) and reminders (on disk) for the skills."""
        from voiceos.alarms import ReminderBook, TimerBoard, reminders_path

        options = self.config.skills
        self.clock = clock or self.clock
        self.timers = TimerBoard(self.clock, max_timers=options.max_timers, max_seconds=options.max_timer_hours * 3600)
        self.reminders = ReminderBook(self.clock, reminders_path(), max_reminders=options.max_reminders)

    def remember(self, user_text: str, reply: str) -> None:
        """Add a finished exchange to the history (what the assistant really said, after an interruption).

        Exchanges that could never fit the prompt again (beyond ``max_prompt_tokens`` x ``CHARS_PER_TOKEN_MAX``
        characters of history, a generous bound) are dropped, oldest first: the memory stays bounded over weeks and
        the prompt fitting never has to walk a long list.
        """
        self.history.extend(({"role": "user", "content": user_text}, {"role": "assistant", "content": reply}))
        budget = self.config.dialogue.max_prompt_tokens * CHARS_PER_TOKEN_MAX
        while len(self.history) > 2 and sum(len(m["content"]) for m in self.history) > budget:
            del self.history[:2]

    # -- audio in ------------------------------------------------------------------------------------------------
    def read_speech(self, path: str | Path) -> np.ndarray:
        return read_audio(path, SAMPLE_RATE, max_seconds=self.config.limits.max_audio_s)

    def transcribe_file(self, path: str | Path) -> Transcript:
        assert self.transcriber is not None, "transcribe_file() needs the asr stage"
        return self.transcriber.transcribe(self.read_speech(path))

    def listen(self, path: str | Path, on_audio: AudioSink | None = None) -> ListenResult:
        """Treat a file as microphone input: VAD finds the speech, ASR transcribes it, the assistant answers."""
        return self.listen_samples(self.read_speech(path), str(path), on_audio)

    def listen_samples(self, samples: np.ndarray, name: str, on_audio: AudioSink | None = None) -> ListenResult:
        """:meth:`listen` on 16 kHz samples already read; ``name`` labels errors."""
        start = time.perf_counter()
        transcript, utterances, timings = self.find_speech(samples, name)
        turn = self.reply(transcript, on_audio=on_audio)
        turn.timings_ms = {**timings, **turn.timings_ms}
        turn.timings_ms["total"] = ms_since(start)
        return ListenResult(transcript, utterances, turn)

    def find_speech(self, samples: np.ndarray, name: str) -> tuple[str, list[Utterance], dict[str, float]]:
        """VAD then ASR over 16 kHz samples: the transcript, the utterances and the vad/asr timings (ms).

        No speech, or nothing intelligible in it, is an :class:`AudioInputError` naming ``name``.
        """
        assert self.transcriber is not None, "find_speech() needs the asr stage"
        start = time.perf_counter()
        utterances = segment(samples, self.config.vad)
        vad_ms = ms_since(start)
        if not utterances:
            raise AudioInputError(f"{name}: no speech detected")
        texts = [self.transcriber.transcribe(u.samples).text for u in utterances]
        transcript = " ".join(t for t in texts if t)
        asr_ms = ms_since(start) - vad_ms
        if not transcript:
            raise AudioInputError(f"{name}: speech detected but nothing intelligible was transcribed")
        return transcript, utterances, {"vad": vad_ms, "asr": asr_ms}

    def system_prompt(self, told: list[Fact] | tuple[Fact, ...] = ()) -> str:
        """The persona, the speaking instructions and what the user has told about themselves (``told``: facts in
        the turn being answered, not yet kept)."""
        return persona_prompt(self.config.persona, self.config.dialogue.system_prompt, self.memory.facts_with(told))

    def reset(self, *, forget_facts: bool = True) -> int:
        """Forget the conversation, including the LM's cache of it (keys and values of everything said), and the
        facts about the user; ``forget_facts=False`` (a new conversation) keeps facts that are kept across restarts
        (privacy.remember). Returns how many facts were forgotten."""
        self.history.clear()
        self.last_reply = ""
        if self.skills is not None:
            self.skills.reset()
        if self.lm is not None:
            self.lm.reset()
        if forget_facts or not self.memory.persistent:
            return self.memory.clear()
        return 0


def split_sentences(text: str) -> list[str]:
    """``text`` cut into the sentences the voice says one by one (a skill's answer, an alarm's notice)."""
    chunker = SentenceChunker()
    return [*chunker.push(text), *chunker.flush()] if text.strip() else []


class _TurnEffects:
    """What a turn changes once it stands: a skill's action, the skills' follow-up question, the facts learnt."""

    def __init__(
        self,
        pipeline: Pipeline,
        skill: SkillReply | None,
        told: list[Fact],
        cancel: threading.Event | None,
        decided: Callable[[], bool] | None,
    ) -> None:
        self.pipeline, self.skill, self.told = pipeline, skill, told
        self.cancel, self.decided = cancel, decided
        self.done = False
        self.learnt: list[Fact] = []

    def stand(self) -> None:
        """Once, when the turn stands (its first audio went out, or it ended without audio); not for a turn that
        was cancelled or dropped before that."""
        if self.done:
            return
        if self.decided is not None and not self.decided():
            return
        if self.cancel is not None and self.cancel.is_set():
            return
        self.done = True
        skill, pipeline = self.skill, self.pipeline
        if skill is not None and skill.action is not None:
            try:
                skill.action()
            except Exception:  # the reply was said already: log it, the next turn works
                log.exception("the action of the %s skill failed", skill.intent)
        if pipeline.skills is not None:
            pipeline.skills.settle(skill)
        if skill is None or skill.learn:
            self.learnt = pipeline.memory.keep(self.told)
