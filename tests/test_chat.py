"""`voiceos chat`: the --jsonl contract, memory within a conversation and the spoken-length cap, on the real LM."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from voiceos.chat import answer_line, run_interactive
from voiceos.dialogue.length import ends_sentence
from voiceos.dialogue.persona import claims_name
from voiceos.pipeline import Pipeline


@pytest.fixture
def text_pipeline(test_config, device_plan, lm):
    """The LM alone (no voice): what `voiceos chat` without --speak loads."""
    pipeline = Pipeline(test_config, device_plan, lm=lm)
    yield pipeline
    pipeline.reset()


def test_a_turn_line_gets_the_reply_both_emotions_and_timings(text_pipeline):
    out = answer_line(text_pipeline, json.dumps({"text": "I lost my job today.", "id": 7}))
    assert out["id"] == 7 and out["reply"] and out["words"] == len(out["reply"].split())
    assert out["user_emotion"]["label"] in out["user_emotion"]["scores"]
    assert isinstance(out["reply_emotion"], str) and out["timings_ms"]["lm_first_token"] > 0


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("not json", "not a JSON object"),
        ("[1, 2]", "expected a JSON object"),
        ('{"text": 5}', "'text' must be a string"),
        ('{"txt": "hi"}', "unknown key 'txt'"),
        ('{"text": "   "}', "empty text"),
    ],
)
def test_a_bad_line_gets_an_error_object_and_changes_nothing(text_pipeline, line, error):
    out = answer_line(text_pipeline, line)
    assert set(out) == {"error"} and error in out["error"], out
    assert text_pipeline.history == [] and text_pipeline.memory.facts == []


def test_what_the_user_says_about_themselves_reaches_the_next_prompts_until_a_new_conversation(text_pipeline):
    out = answer_line(text_pipeline, json.dumps({"text": "Hi, my name is Maya and I have a dog called Biscuit."}))
    learnt = [fact["text"] for fact in out["learnt"]]
    assert learnt == ["The user's name is Maya.", "The user has a dog called Biscuit."]
    assert "The user's name is Maya." in text_pipeline.system_prompt()
    corrected = answer_line(text_pipeline, json.dumps({"text": "Sorry, my name is actually Mia."}))
    assert [fact["text"] for fact in corrected["learnt"]] == ["The user's name is Mia."]  # a correction is news too
    answer_line(text_pipeline, json.dumps({"text": "What is my dog called?"}))
    assert answer_line(text_pipeline, '{"reset": true}') == {"reset": True, "forgotten_facts": 2}
    assert text_pipeline.history == [] and "Mia" not in text_pipeline.system_prompt()


@pytest.mark.parametrize(
    ("told", "asked", "name"),
    [
        ("Call me Tom.", "Do you know my name?", "Tom"),
        ("Hi, I'm Sam. I just got back from a long walk.", "What's my name?", "Sam"),
    ],
)
def test_asked_their_name_a_turn_later_the_user_hears_it_back(text_pipeline, told, asked, name):
    first = text_pipeline.reply(told)
    assert first.reply.strip() and not claims_name(first.reply, name), first.reply
    turn = text_pipeline.reply(asked)
    assert name in turn.reply and not claims_name(turn.reply, name), (turn.reply, turn.dropped)


def test_a_passing_remark_gets_at_most_two_sentences_a_story_more(text_pipeline):
    short = text_pipeline.reply("I went to the park with my kids this afternoon.")
    assert sum(ends_sentence(s) for s in short.sentences) <= 2, short.sentences
    story = text_pipeline.reply("Tell me a long story about a dragon who learns to bake bread.")
    assert sum(ends_sentence(s) for s in story.sentences) > 2, story.sentences


def test_voiceos_chat_jsonl_answers_every_line_in_order_in_one_process(no_sound_env, tmp_path):
    lines = ['{"text": "Hello!"}', "oops", '{"reset": true}', '{"text": "What is the capital of France?"}']
    command = [sys.executable, "-m", "voiceos", "chat", "--jsonl"]
    env = dict(no_sound_env, XDG_DATA_HOME=str(tmp_path / "data"))
    done = subprocess.run(command, input="\n".join(lines) + "\n", capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 4 and out[0]["reply"] and "error" in out[1] and out[2]["reset"] is True
    assert out[3]["input"] == "What is the capital of France?" and out[3]["reply"], out[3]
    assert not (tmp_path / "data").exists()  # privacy.remember is off: nothing written


def test_interactive_chat_shows_what_is_said_not_the_lm_raw_words(
    test_config, device_plan, llama_lm, monkeypatch, capsys
):
    """The default decoder, as `voiceos chat` runs it: each turn's screen line is the reply that was said (after the
    name guard and the sentence cap), even where the LM wrote something else."""
    pipeline = Pipeline(test_config, device_plan, lm=llama_lm)
    said, written = [], []
    reply = pipeline.reply

    def reply_seeing_the_lm(text, **kwargs):  # the real turn; the LM's raw deltas kept beside it
        deltas: list[str] = []
        turn = reply(text, on_delta=deltas.append, **kwargs)
        said.append(turn.reply)
        written.append("".join(deltas).strip())
        return turn

    monkeypatch.setattr(pipeline, "reply", reply_seeing_the_lm)
    turns = ["Hi, I'm Sam. I just got back from a long walk.", "What's my name?", "Tell me about your day."]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(turns) + "\n"))
    try:
        assert run_interactive(pipeline) == 0
    finally:
        pipeline.reset()
    name = test_config.persona.name.lower()
    screen = capsys.readouterr().out.splitlines()
    shown = [line.split(f"{name}>", 1)[1].strip() for line in screen if f"{name}>" in line]
    assert shown == said, (shown, said, written)
    assert all(shown), shown
    assert any(w != s for w, s in zip(written, said, strict=True)), (written, said)  # a guard or the cap acted
