"""The dialogue LM as the last responder: it answers whatever no skill took, streaming its words into the speaker.

What is said of the LM's words is decided here: sentences stop at ``dialogue.max_sentences`` unless the user asked
for detail (voiceos.dialogue.length). Guards keep a sentence from being said: one in which the assistant takes the
user's name as its own (voiceos.dialogue.persona; asked "What's my name?", it is said to the user instead: "I'm
Sam." -> "You're Sam."), one that states the time, the date, the weather or the news when the user asked about them
(voiceos.reply.honesty), a condolence when the emotion head is sure the user is calm or happy
(voiceos.reply.condolence, ``emotion.condolence_guard``), a celebration when it is sure the user is calm or upset
(voiceos.reply.celebration, ``emotion.celebration_guard``). A sentence cut off by ``max_new_tokens`` is not said, and
a dialogue server that fails (``dialogue.backend: openai``) is answered with a short apology. A reply is never
empty: when nothing is left to say, a short stand-in sentence is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from voiceos.config import Config
from voiceos.dialogue.backend import DialogueBackend
from voiceos.dialogue.length import ends_sentence, wants_detail
from voiceos.dialogue.persona import asks_own_name, claims_name, told_back
from voiceos.emotion.labels import EmotionResult
from voiceos.emotion.policy import reply_style
from voiceos.errors import DialogueServerError
from voiceos.reply.celebration import misplaced_celebration
from voiceos.reply.condolence import misplaced_condolence
from voiceos.reply.honesty import CANNOT_CHECK, asks_about_now, states_now
from voiceos.reply.speaker import ReplySpeaker, ms_since

log = logging.getLogger(__name__)

# said when the dialogue server (dialogue.backend: openai) is down, too slow or answers garbage; the log says which
SERVER_APOLOGY = "Sorry, I can't reach my language model right now."
# said when nothing of the LM's reply is left to say (the guards dropped every sentence): never silence
NOTHING_LEFT = "Sorry, I'm not sure what to say to that."


@dataclass
class DialogueOutcome:
    user_emotion: dict
    error: str | None = None  # the dialogue server's failure, when the reply is the apology
    # sentences a guard kept from being said as written, by guard; "nothing_left": 1 when a stand-in sentence was
    # said because nothing else was left
    dropped: dict[str, int] = field(default_factory=dict)


def speak_dialogue_reply(
    lm: DialogueBackend,
    config: Config,
    speaker: ReplySpeaker,
    *,
    history: list[dict[str, str]],
    user_text: str,
    system_prompt: str,
    name_of_user: str | None,
    on_delta: Callable[[str], None] | None = None,
    on_user_emotion: Callable[[EmotionResult], None] | None = None,
) -> DialogueOutcome:
    """Stream the LM's reply to ``user_text`` into ``speaker`` (each whole sentence spoken as it comes)."""
    timings, start = speaker.timings, speaker.start
    outcome = DialogueOutcome({"label": "neutral", "scores": {}})

    reading: list[EmotionResult] = []  # the head's reading of the user's turn, once the LM has it

    def on_emotion(result: EmotionResult) -> str | None:
        reading.append(result)
        style = reply_style(result, config.emotion)
        outcome.user_emotion, speaker.emotion = result.as_json(), style.voice_emotion
        timings["emotion"] = ms_since(start)
        log.info("user emotion %s (%.2f) -> voice %s", result.label, result.confidence, speaker.emotion)
        if on_user_emotion is not None:
            on_user_emotion(result)
        return style.note

    about_now = asks_about_now(user_text)

    def guarded(sentence: str) -> str | None:
        """The guard that keeps ``sentence`` from being said, if any."""
        if claims_name(sentence, name_of_user):  # "I'm Maya." to Maya: never its name (persona.py)
            return "name"
        if about_now and states_now(sentence):  # asked the time or the weather: it cannot know (honesty.py)
            return "invented_now"
        if reading and misplaced_condolence(sentence, reading[-1], config.emotion.condolence_guard):
            return "condolence"  # "I'm sorry to hear that." to a calm remark (condolence.py)
        if reading and misplaced_celebration(sentence, reading[-1], config.emotion.celebration_guard):
            return "celebration"  # "That is awesome!" to a calm remark (celebration.py)
        return None

    asked_name = name_of_user is not None and asks_own_name(user_text)

    def said(sentence: str) -> bool:
        """Speak a whole sentence; False for one that is not said."""
        guard = guarded(sentence)
        if guard is not None:
            outcome.dropped[guard] = outcome.dropped.get(guard, 0) + 1
            if (
                guard == "name" and asked_name and name_of_user is not None
            ):  # "What's my name?" -> "I'm Sam.": the answer, said to the user
                log.info("a sentence of the reply was said to the user (name guard)")
                speaker.say(told_back(sentence, name_of_user))
                return True
            log.info("a sentence of the reply was not said (%s guard)", guard)
            return False
        speaker.say(sentence)
        return True

    detail = wants_detail(user_text)
    dialogue = config.dialogue
    deltas = lm.stream_reply(
        history,
        user_text,
        system_prompt=system_prompt,
        max_new_tokens=dialogue.max_new_tokens,
        on_emotion=on_emotion,
        use_adapter=not detail,  # the adapter speaks briefly; a story or an explanation is the base model's
    )
    sentence_cap = 0 if detail else dialogue.max_sentences
    whole = 0  # whole sentences said so far

    def enough() -> bool:
        return speaker.cancelled or (sentence_cap > 0 and whole >= sentence_cap)

    try:
        for delta in deltas:
            if enough():
                break
            timings.setdefault("lm_first_token", ms_since(start))
            if on_delta is not None:
                on_delta(delta)
            for sentence in speaker.chunker.push(delta):
                whole += said(sentence) and ends_sentence(sentence)
                if enough():
                    break
    except DialogueServerError as err:  # down, too slow, or garbage: say so briefly, and the daemon goes on
        outcome.error = str(err)
        log.error("dialogue server failed: %s", err)
    finally:
        deltas.close()  # stops decoding at once when we left early
    timings["lm_total"] = ms_since(start)
    tail = [] if enough() else speaker.chunker.flush()
    if outcome.error is not None:
        tail = [] if speaker.cancelled else [SERVER_APOLOGY]  # (a sentence cut by the failure is not said)
    if lm.last_stats.stop_reason == "max_tokens" and (speaker.spans or speaker.has_kept):
        # The reply ran into dialogue.max_new_tokens mid-sentence: end on the last whole sentence.
        log.info("dropping %d unfinished chunk(s) cut off by max_new_tokens", len(tail))
        tail = []
    for sentence in tail:
        said(sentence)
    if not speaker.spans and not speaker.has_kept and not speaker.cancelled:  # a reply is never empty
        # all it had was made up: say so; else every sentence was dropped, or the LM ended at once
        speaker.say(CANNOT_CHECK if outcome.dropped.get("invented_now") else NOTHING_LEFT)
        outcome.dropped["nothing_left"] = 1
        log.info("nothing of the LM's reply was left to say: a stand-in sentence was said")
    return outcome
