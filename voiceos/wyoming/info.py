"""The answer to ``describe``: what this server offers Home Assistant (ASR, TTS, and a conversation agent)."""

from __future__ import annotations

from typing import Any, TypeVar

from wyoming.info import (
    Artifact,
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
    TtsVoiceSpeaker,
)

from voiceos import __version__
from voiceos.asr import Transcriber
from voiceos.models import EMBEDDED_LM
from voiceos.pipeline import Pipeline
from voiceos.wyoming.voices import VoiceCatalog, voice_languages

VOICEOS = Attribution(name="voiceos", url="")  # no public home page yet
WHISPER = Attribution(name="OpenAI Whisper (faster-whisper)", url="https://github.com/SYSTRAN/faster-whisper")
MOONSHINE = Attribution(name="Moonshine (Useful Sensors)", url="https://github.com/moonshine-ai/moonshine")
PIPER = Attribution(name="Piper", url="https://github.com/OHF-Voice/piper1-gpl")
COQUI = Attribution(name="Coqui TTS", url="https://github.com/idiap/coqui-ai-TTS")
SMOLLM2 = Attribution(name="SmolLM2-135M-Instruct", url="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct")
HUGGING_FACE = "https://huggingface.co/"
A = TypeVar("A", bound=Artifact)
LM_LANGUAGES = ["en"]  # the embedded LM, its adapter and the emotion head are trained on English only


def asr_languages(pipeline: Pipeline) -> list[str]:
    """What the ASR transcribes here: the language it is told (asr.language), else every language its model knows."""
    language = pipeline.config.asr.language
    if language:
        return [language]
    return pipeline.transcriber.languages if pipeline.transcriber is not None else []


def asr_program_name(asr: Transcriber) -> str:
    return f"voiceos-{asr.engine}"


def build_info(pipeline: Pipeline, voices: VoiceCatalog) -> Info:
    """One program per loaded stage; the handle program's description says what it remembers right now."""
    config = pipeline.config
    info = Info()
    if (asr := pipeline.transcriber) is not None:
        attribution = MOONSHINE if asr.engine == "moonshine" else WHISPER
        model = _artifact(AsrModel, asr.model_name, asr.describe(), attribution, languages=asr_languages(pipeline))
        about = f"voiceos speech recognition ({asr.engine.capitalize()})"
        info.asr.append(_program(AsrProgram, asr_program_name(asr), about, models=[model]))
    if voices.default is not None:
        offered = [
            _artifact(
                TtsVoice,
                name,
                profile.description or profile.name,
                COQUI if profile.engine == "coqui" else PIPER,
                languages=voice_languages(profile),
                speakers=[TtsVoiceSpeaker(name=e) for e in profile.emotion_names] or None,
            )
            for name, profile in sorted(voices.profiles.items())
        ]
        about = "voiceos speech with emotion prosody (each speaker of a voice is one of its emotions)"
        info.tts.append(_program(TtsProgram, "voiceos-tts", about, voices=offered))
    if pipeline.lm is not None:
        lm_model, persona = config.dialogue.model, config.persona.name
        embedded = lm_model == EMBEDDED_LM
        lm = _artifact(
            HandleModel,
            "SmolLM2-135M-Instruct" if embedded else lm_model,
            f"the dialogue LM speaking as {persona}, with an emotion head",
            SMOLLM2 if embedded else Attribution(name=lm_model, url=HUGGING_FACE),
            languages=LM_LANGUAGES,
        )
        kept = "kept across restarts" if pipeline.memory.persistent else "for this server's lifetime"
        facts = len(pipeline.memory.facts)
        about = f"{persona}, the voiceos conversation agent (remembers {facts} fact(s) about you, {kept})"
        info.handle.append(_program(HandleProgram, "voiceos-conversation", about, models=[lm]))
    return info


def _program(kind: type[A], name: str, description: str, **fields: Any) -> A:
    """A program of this server: voiceos's, installed, at voiceos's version."""
    return kind(name=name, description=description, attribution=VOICEOS, installed=True, version=__version__, **fields)


def _artifact(kind: type[A], name: str, description: str, attribution: Attribution, **fields: Any) -> A:
    """A model or voice a program uses: installed (it is loaded, or loads from disk), of no version of its own."""
    return kind(name=name, description=description, attribution=attribution, installed=True, version=None, **fields)
