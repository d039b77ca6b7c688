"""``dialogue.backend: openai`` against a real OpenAI-compatible server: llama-cpp-python's (``python -m
llama_cpp.server``) serving the embedded SmolLM2 GGUF on 127.0.0.1, started once for the module. The emotion head
reads the embedded LM's prefill locally (the session's ``lm``). Broken servers (down, garbage, silent) get the
spoken apology and the next turn works."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from lm_server import GARBAGE, BrokenServer

from voiceos.config import load_config
from voiceos.dialogue.openai_chat import OpenAIChat
from voiceos.errors import ConfigError, DialogueServerError
from voiceos.lm_server import LlamaServer, free_port
from voiceos.models import embedded_lm_gguf
from voiceos.pipeline import SERVER_APOLOGY, Pipeline

QUESTION = "What is the capital of France?"
STORY = "Tell me a long story about a dragon who learns to bake bread."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = LlamaServer(embedded_lm_gguf(), tmp_path_factory.mktemp("llama") / "server.log")
    yield running
    running.stop()


def _options(test_config, base_url: str, **changes):
    return dataclasses.replace(test_config.dialogue, backend="openai", base_url=base_url, **changes)


def _chat(test_config, device_plan, base_url: str, local=None, **changes) -> OpenAIChat:
    chat = OpenAIChat.load(_options(test_config, base_url, **changes), device_plan, emotion=False)
    chat.local = local
    return chat


def test_a_reply_streams_in_pieces_and_is_what_the_server_answers_to_the_same_messages(
    server, test_config, device_plan
):
    chat = _chat(test_config, device_plan, server.base_url)
    deltas = list(chat.stream_reply([], QUESTION, max_new_tokens=40))
    assert len(deltas) > 3 and "Paris" in "".join(deltas)
    assert chat.last_stats.stop_reason in ("eos", "max_tokens") and chat.last_stats.tokens == len(deltas)
    assert chat.model() == server.model  # the first (only) model the server lists

    whole = chat.client.chat.completions.create(  # the same messages, asked without streaming
        model=server.model,
        messages=chat.messages_for([], QUESTION, system_prompt=None, extra_system=None),
        max_tokens=40,
        temperature=0.0,
    )
    assert "".join(deltas) == whole.choices[0].message.content


def test_the_pipeline_speaks_a_server_reply_with_the_emotion_read_locally(
    server, test_config, device_plan, lm, tts_engine
):
    chat = _chat(test_config, device_plan, server.base_url, local=lm)
    pipeline = Pipeline(test_config, device_plan, lm=chat, tts=tts_engine, voice=tts_engine.profile)
    turn = pipeline.reply("I just lost my job and I feel terrible.")
    assert turn.reply.strip() and turn.error is None and turn.audio_seconds > 0.5
    assert turn.user_emotion["scores"] and turn.user_emotion["label"] == "sadness"  # the head, on the local prefill
    assert "emotion" in turn.timings_ms and "lm_first_token" in turn.timings_ms
    assert pipeline.history[-1] == {"role": "assistant", "content": turn.reply}
    follow = pipeline.reply("Thank you. What did I just tell you?")  # the history goes to the server too
    assert follow.reply.strip() and follow.error is None


def test_closing_the_reply_stops_the_stream_and_the_server_serves_the_next_turn(server, test_config, device_plan):
    chat = _chat(test_config, device_plan, server.base_url)
    stream = chat.stream_reply([], STORY, max_new_tokens=300)
    first = [next(stream), next(stream)]
    stream.close()  # a barge-in
    assert chat.last_stats.stop_reason == "cancelled" and chat.last_stats.tokens == len(first)
    assert "Paris" in "".join(chat.stream_reply([], QUESTION, max_new_tokens=30))


def test_a_barge_in_cancels_the_server_stream_mid_reply(server, test_config, device_plan, tts_engine):
    chat = _chat(test_config, device_plan, server.base_url)
    pipeline = Pipeline(test_config, device_plan, lm=chat, tts=tts_engine, voice=tts_engine.profile)
    cancel = threading.Event()
    turn = pipeline.reply(STORY, cancel=cancel, on_delta=lambda _delta: cancel.set())  # the user speaks at once
    assert turn.cancelled and chat.last_stats.stop_reason == "cancelled"
    assert chat.last_stats.tokens <= 2  # the delta that set it, and at most the one already on its way
    assert pipeline.history == []  # the daemon remembers only what was heard


def test_a_server_killed_mid_reply_gets_a_spoken_apology_and_the_next_turn_one_too(
    test_config, device_plan, tts_engine, tmp_path
):
    doomed = LlamaServer(embedded_lm_gguf(), tmp_path / "server.log")
    try:
        chat = _chat(test_config, device_plan, doomed.base_url)
        pipeline = Pipeline(test_config, device_plan, lm=chat, tts=tts_engine, voice=tts_engine.profile)
        killed = []

        def kill_once(_delta: str) -> None:
            if not killed:
                killed.append(True)
                doomed.kill()

        turn = pipeline.reply(STORY, on_delta=kill_once)
        assert killed and turn.error and doomed.base_url in turn.error
        assert turn.sentences[-1] == SERVER_APOLOGY and turn.audio_seconds > 1.0  # said, not only logged
        assert pipeline.history == []  # an apology is not an answer to remember
        again = pipeline.reply(QUESTION)  # the server stays down: the same apology, at once
        assert again.reply == SERVER_APOLOGY and "Connection" in again.error
    finally:
        doomed.stop()


@pytest.mark.parametrize(("reply", "why"), [(GARBAGE, "garbage"), (None, "silence")])
def test_a_server_that_answers_garbage_or_nothing_gets_the_apology(reply, why, test_config, device_plan):
    broken = BrokenServer(reply)
    try:
        chat = _chat(test_config, device_plan, broken.base_url, server_model="any", timeout_s=1.0)
        pipeline = Pipeline(test_config, device_plan, lm=chat)
        turn = pipeline.reply(QUESTION)
        assert turn.reply == SERVER_APOLOGY and turn.error, why
        assert b"POST /v1/chat/completions" in broken.requests[0]
    finally:
        broken.close()


def test_a_server_that_is_down_is_one_line_in_the_error(test_config, device_plan):
    chat = _chat(test_config, device_plan, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(DialogueServerError) as err:
        list(chat.stream_reply([], QUESTION))
    assert "\n" not in str(err.value) and "cannot list its models" in str(err.value)


def test_the_api_key_comes_from_the_environment_variable_config_names(test_config, device_plan, monkeypatch):
    broken = BrokenServer(GARBAGE)
    try:
        monkeypatch.setenv("VOICEOS_TEST_KEY", "sk-local-123")
        chat = _chat(test_config, device_plan, broken.base_url, server_model="any", api_key_env="VOICEOS_TEST_KEY")
        with pytest.raises(DialogueServerError):
            list(chat.stream_reply([], QUESTION))
        assert b"Bearer sk-local-123" in broken.requests[0]
        monkeypatch.delenv("VOICEOS_TEST_KEY")
        with pytest.raises(ConfigError, match="VOICEOS_TEST_KEY is not set"):
            _chat(test_config, device_plan, broken.base_url, api_key_env="VOICEOS_TEST_KEY")
    finally:
        broken.close()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("dialogue:\n  backend: openai\n", "backend openai needs base_url"),
        ("dialogue:\n  backend: openai\n  base_url: 127.0.0.1:8080\n", "backend openai needs base_url"),
        ("dialogue:\n  backend: openai\n  base_url: http://x/v1\n  api_key_env: sk-123 abc\n", "api_key_env"),
    ],
)
def test_an_openai_backend_without_a_usable_address_or_key_name_is_refused_in_one_line(tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_the_emotion_read_for_a_remote_reply_is_the_one_a_local_reply_reads(lm):
    text = "My dog died this morning and I can't stop crying."
    seen = []
    lm.reset()
    "".join(lm.stream_reply([], text, max_new_tokens=1, on_emotion=lambda result: seen.append(result) or None))
    lm.reset()
    alone = lm.read_emotion([], text)
    assert alone is not None and alone.label == seen[0].label
    assert alone.scores == pytest.approx(seen[0].scores, abs=1e-4)


def test_bench_measures_the_first_token_through_a_server_beside_the_in_process_lm(test_config):
    from voiceos.bench import STAGES, summary
    from voiceos.lm_server import first_token_through_server

    served = first_token_through_server(test_config, tokens=16, runs=1)  # starts llama_cpp.server on the GGUF
    assert served is not None and served["first_token_ms"] > 0 and served["tokens_per_s"] > 0
    lm = {"model": "embedded:x", "device": "cpu", "dtype": "float32", "tokens_per_s": 15.2, "first_token_ms": 250.0}
    run = {"end_to_first_audio_ms_p50": 1500.0, "end_to_first_audio_ms_p90": 2100.0}
    run |= {f"{stage}_ms_p50": 10.0 for stage in STAGES}
    text = summary({"utterances": 1, **run, "lm": lm | {"through_server": served}})
    assert f"first token {served['first_token_ms']} ms" in text and "in process: 250.0 ms, 15.2 tok/s" in text


def test_doctor_says_which_model_the_server_serves_and_fails_in_one_line_when_it_is_down(server, test_config):
    from voiceos.doctor import run_checks

    def checks_for(base_url: str) -> dict:
        config = dataclasses.replace(test_config, dialogue=_options(test_config, base_url))
        return {check.name: check for check in run_checks(config)}

    up = checks_for(server.base_url)["dialogue server"]
    assert up.ok and up.required and server.model in up.detail
    down = checks_for(f"http://127.0.0.1:{free_port()}/v1")["dialogue server"]
    assert not down.ok and "cannot list its models" in down.detail and "\n" not in down.detail
    assert "dialogue server" not in {check.name for check in run_checks(test_config)}  # the embedded LM: no check
