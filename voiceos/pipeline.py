"""One turn of conversation, wired once and used by every entry point (say, listen, bench, the daemon).

The stages overlap inside a turn: LM text deltas go through the sentence chunker, and each finished sentence is
synthesized and handed to ``on_audio`` while the LM goes on writing the next one.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voiceos.asr import SAMPLE_RATE, Transcriber, Transcript, load_transcriber
from voiceos.audio.files import read_audio
from voiceos.config import Config
from voiceos.dialogue import SentenceChunker
from voiceos.dialogue.backend import DialogueBackend, load_dialogue
from voiceos.dialogue.length import ends_sentence, wants_detail
from voiceos.dialogue.persona import claims_name, persona_prompt, user_name
from voiceos.emotion.labels import EmotionResult
from voiceos.emotion.policy import reply_style
from voiceos.errors import AudioInputError, DialogueServerError, TextInputError
from voiceos.memory import Fact, MemoryStore, memory_path
from voiceos.models import DevicePlan, plan_for
from voiceos.privacy import redact
from voiceos.tts import TtsEngine, load_engine
from voiceos.tts.voices import VoiceProfile, load_voice
from voiceos.vad import Utterance, segment

log = logging.getLogger(__name__)

AudioSink = Callable[[np.ndarray], None]
STAGES = ("asr", "lm", "tts")
CHARS_PER_TOKEN_MAX = 8  # generous: English BPE tokens average ~4 characters
# said when the dialogue server (dialogue.backend: openai) is down, too slow or answers garbage; the log says which
SERVER_APOLOGY = "Sorry, I can't reach my language model right now."


@dataclass(frozen=True)
class SentenceSpan:
    """One synthesized sentence and where its audio lies in the turn's audio (samples, end exclusive)."""

    text: str
    start: int
    end: int


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
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
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
        data["segments"] = [{"start_s": round(u.start_s, 3), "end_s": round(u.end_s, 3)} for u in self.segments]
        return data


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
            if "tts" in stages:
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

    # -- text in, speech out -------------------------------------------------------------------------------------
    def reply(
        self,
        text: str,
        on_audio: AudioSink | None = None,
        remember: bool = True,
        *,
        cancel: threading.Event | None = None,
        on_delta: Callable[[str], None] | None = None,
        on_user_emotion: Callable[[EmotionResult], None] | None = None,
    ) -> TurnResult:
        """Answer ``text`` in speech. Each synthesized sentence goes to ``on_audio`` as soon as it exists.

        Setting ``cancel`` (from any thread) stops the LM and the synthesis at the next token or audio chunk; the
        result then has ``cancelled`` set and nothing is remembered (the caller knows what was heard).
        """
        assert self.lm is not None, "reply() needs the lm stage (and tts, to speak: without it, text only)"
        user_text = clean_text(text, self.config.limits.max_text_chars)
        start = time.perf_counter()
        timings: dict[str, float] = {}
        first_clause = self.config.tts.first_clause_chars
        chunker = SentenceChunker(first_clause=first_clause > 0, clause_min_chars=first_clause or 40)
        spans: list[SentenceSpan] = []
        audio_parts: list[np.ndarray] = []
        produced = 0
        reply_emotion = "neutral"
        user_emotion: dict = {"label": "neutral", "scores": {}}
        sequential = self.config.runtime.sequential  # the no-overlap baseline `voiceos bench` compares against
        written: list[str] = []

        def on_emotion(result: EmotionResult) -> str | None:
            nonlocal reply_emotion, user_emotion
            style = reply_style(result, self.config.emotion)
            user_emotion, reply_emotion = result.as_json(), style.voice_emotion
            timings["emotion"] = _ms_since(start)
            log.info("user emotion %s (%.2f) -> voice %s", result.label, result.confidence, reply_emotion)
            if on_user_emotion is not None:
                on_user_emotion(result)
            return style.note

        def cancelled() -> bool:
            return cancel is not None and cancel.is_set()

        def speak(sentence: str) -> None:
            nonlocal produced
            first = produced
            timings.setdefault("first_sentence", _ms_since(start))
            if self.tts is None:  # a text reply (voiceos chat): the sentences without their audio
                spans.append(SentenceSpan(sentence, first, first))
                return
            for chunk in self.tts.synthesize(sentence, emotion=reply_emotion):
                if cancelled():
                    break
                if "tts_first_audio" not in timings:
                    timings["tts_first_audio"] = _ms_since(start)
                audio_parts.append(chunk)
                produced += len(chunk)
                if on_audio is not None and not sequential:
                    on_audio(chunk)
            spans.append(SentenceSpan(sentence, first, produced))

        def finished(sentence: str) -> bool:
            """Speak (or keep for later) a whole sentence; False for one that is not said."""
            if claims_name(sentence, name_of_user):  # "I'm Maya." to Maya: never its name (persona.py)
                log.info("dropped a sentence in which the assistant took the user's name as its own")
                return False
            if sequential:
                written.append(sentence)  # spoken once the LM has written the whole reply
            else:
                speak(sentence)
            return True

        dialogue = self.config.dialogue
        # Before the reply, so "I'm Maya, what's my name?" can be answered at once; whatever becomes of the reply
        # (the daemon remembers only what was heard), the user did say it.
        learnt = self.memory.learn(user_text)
        name_of_user = user_name(self.memory.facts)
        detail = wants_detail(user_text)
        deltas = self.lm.stream_reply(
            self.history,
            user_text,
            system_prompt=self.system_prompt(),
            max_new_tokens=dialogue.max_new_tokens,
            on_emotion=on_emotion,
            use_adapter=not detail,  # the adapter speaks briefly; a story or an explanation is the base model's
        )
        sentence_cap = 0 if detail else dialogue.max_sentences
        said = 0  # whole sentences so far

        def said_enough() -> bool:
            return sentence_cap > 0 and said >= sentence_cap

        failed: str | None = None  # the dialogue server's failure (dialogue.backend: openai)
        try:
            for delta in deltas:
                if cancelled() or said_enough():
                    break
                if "lm_first_token" not in timings:
                    timings["lm_first_token"] = _ms_since(start)
                if on_delta is not None:
                    on_delta(delta)
                for sentence in chunker.push(delta):
                    said += finished(sentence) and ends_sentence(sentence)
                    if cancelled() or said_enough():
                        break
        except DialogueServerError as err:  # down, too slow, or garbage: say so briefly, and the daemon goes on
            failed = str(err)
            log.error("dialogue server failed: %s", err)
        finally:
            deltas.close()  # stops decoding at once when we left early
        timings["lm_total"] = _ms_since(start)
        tail = [] if cancelled() or said_enough() else chunker.flush()
        if failed is not None:
            tail = [] if cancelled() else [SERVER_APOLOGY]  # (a sentence cut by the failure is not said)
        if self.lm.last_stats.stop_reason == "max_tokens" and (spans or written):
            # The reply ran into dialogue.max_new_tokens mid-sentence: end on the last whole sentence.
            log.info("dropping %d unfinished chunk(s) cut off by max_new_tokens", len(tail))
            tail = []
        tail = [sentence for sentence in tail if not claims_name(sentence, name_of_user)]
        if sequential:
            tail = written + tail
        for sentence in tail:
            speak(sentence)
        if sequential and on_audio is not None and not cancelled():
            for chunk in audio_parts:
                on_audio(chunk)
        timings["total"] = _ms_since(start)

        sentences = [span.text for span in spans]
        reply = " ".join(sentences)
        was_cancelled = cancelled()
        if remember and not was_cancelled and failed is None:  # (an apology is not an answer to remember)
            self.remember(user_text, reply)
        audio = np.concatenate(audio_parts) if audio_parts else np.zeros(0, dtype=np.float32)
        show = self.config.privacy.log_transcripts
        log.info(
            "turn: %s -> %s, %d sentences, %.0f ms%s",
            redact(user_text, show),
            redact(reply, show),
            len(sentences),
            timings["total"],
            " (cancelled)" if was_cancelled else "",
        )
        return TurnResult(
            user_text,
            reply,
            sentences,
            audio,
            self.tts.sample_rate if self.tts is not None else 0,
            timings,
            user_emotion=user_emotion,
            reply_emotion=reply_emotion,
            spans=spans,
            cancelled=was_cancelled,
            learnt=learnt,
            error=failed,
        )

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
        turn.timings_ms["total"] = _ms_since(start)
        return ListenResult(transcript, utterances, turn)

    def find_speech(self, samples: np.ndarray, name: str) -> tuple[str, list[Utterance], dict[str, float]]:
        """VAD then ASR over 16 kHz samples: the transcript, the utterances and the vad/asr timings (ms).

        No speech, or nothing intelligible in it, is an :class:`AudioInputError` naming ``name``.
        """
        assert self.transcriber is not None, "find_speech() needs the asr stage"
        start = time.perf_counter()
        utterances = segment(samples, self.config.vad)
        vad_ms = _ms_since(start)
        if not utterances:
            raise AudioInputError(f"{name}: no speech detected")
        texts = [self.transcriber.transcribe(u.samples).text for u in utterances]
        transcript = " ".join(t for t in texts if t)
        asr_ms = _ms_since(start) - vad_ms
        if not transcript:
            raise AudioInputError(f"{name}: speech detected but nothing intelligible was transcribed")
        return transcript, utterances, {"vad": vad_ms, "asr": asr_ms}

    def system_prompt(self) -> str:
        """The persona, the speaking instructions and what the user has told about themselves."""
        return persona_prompt(self.config.persona, self.config.dialogue.system_prompt, self.memory.facts)

    def reset(self, *, forget_facts: bool = True) -> int:
        """Forget the conversation, including the LM's cache of it (keys and values of everything said), and the
        facts about the user; ``forget_facts=False`` (a new conversation) keeps facts that are kept across restarts
        (privacy.remember). Returns how many facts were forgotten."""
        self.history.clear()
        if self.lm is not None:
            self.lm.reset()
        if forget_facts or not self.memory.persistent:
            return self.memory.clear()
        return 0


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
