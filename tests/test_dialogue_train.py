"""Fine-tuning data (voiceos/dialogue/tuning_data.py) and `voiceos train dialogue` (voiceos/dialogue/train.py)."""

from __future__ import annotations

import dataclasses
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from voiceos.config import Config
from voiceos.dialogue.tuning_corpora import content_stems, names_only_it_uses, opener
from voiceos.dialogue.tuning_data import (
    DEFAULT_DATA_DIR,
    SHARES,
    build_dev_sets,
    build_training_set,
    detokenize_dailydialog,
)
from voiceos.emotion.labels import LABELS, EmotionResult

PROBES = Path(__file__).resolve().parents[1] / "benchmarks" / "conversation_probes.py"
NEUTRAL_NOTE = "Note: the user is just talking. Answer what they said."
SAD_NOTE = "Note: the user seems sad. Respond to that feeling warmly and briefly."


def reads_sad_words(messages):
    """A stand-in for the emotion head (pure logic): sad when the user's turn says "sad" or "died", else neutral."""
    said = messages[-1]["content"].lower()
    label = "sadness" if "sad" in said or "died" in said else "neutral"
    return EmotionResult(label, {name: 0.9 if name == label else 0.1 / 6 for name in LABELS})


@pytest.fixture(scope="module")
def examples():
    return build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=3)


def test_the_same_seed_builds_the_same_set_and_another_seed_another(examples):
    assert build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=3) == examples
    assert build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=4) != examples


def test_the_set_mixes_every_kind_in_its_share(examples):
    kinds = [e.kind for e in examples]
    assert len(examples) == 400
    assert {k: kinds.count(k) for k in set(kinds)} == {kind: round(400 * share) for kind, share in SHARES.items()}


def test_corpus_replies_are_about_what_the_user_said_and_no_opening_dominates(examples):
    corpus = [e for e in examples if e.kind in ("chat", "question", "request", "empathy")]
    users = [" ".join(m["content"] for m in e.messages if m["role"] == "user") for e in corpus]
    shared = [bool(content_stems(e.reply) & content_stems(said)) for e, said in zip(corpus, users, strict=True)]
    assert sum(shared) > len(corpus) / 2
    answered = [e for e, shares in zip(corpus, shared, strict=True) if not shares]  # they answer a question/request
    assert all(e.kind in ("question", "request") or e.messages[-1]["content"].endswith("?") for e in answered)
    for kind in ("chat", "empathy"):
        openers = [opener(e.reply) for e in corpus if e.kind == kind]
        assert max(openers.count(o) for o in set(openers)) <= max(1, int(0.03 * len(openers)))


def test_corpus_examples_keep_the_conversation_so_far(examples):
    later = [e for e in examples if e.kind in ("chat", "empathy") and len(e.messages) > 2]
    assert later and all(e.messages[1]["role"] == "user" for e in later)
    assert all(e.messages[-1]["role"] == "user" for e in examples)  # no emotion reader: no note


def test_a_reply_calling_someone_by_a_name_nobody_used_is_recognised():
    assert names_only_it_uses("Sure, Jim. I'll be there.", "Can you come to the party?")
    assert not names_only_it_uses("Sure, Jim. I'll be there.", "Jim, can you come?")
    assert not names_only_it_uses("Yes. I love it.", "Do you like it?")


def test_every_example_gets_the_note_the_policy_adds_for_the_heads_reading():
    config = Config()
    plain = build_training_set(config, DEFAULT_DATA_DIR, 200, seed=5, read_emotion=reads_sad_words)
    sad = [e for e in plain if e.messages[-1]["role"] == "system"]
    assert sad and all(e.messages[-1]["content"] == SAD_NOTE for e in sad)
    assert all(any(w in e.messages[-2]["content"].lower() for w in ("sad", "died")) for e in sad)
    emotion = dataclasses.replace(config.emotion, neutral_note=NEUTRAL_NOTE)
    with_neutral = dataclasses.replace(config, emotion=emotion)
    noted = build_training_set(with_neutral, DEFAULT_DATA_DIR, 200, seed=5, read_emotion=reads_sad_words)
    assert [e.reply for e in noted] == [e.reply for e in plain]  # the same examples, only the notes differ
    assert len([e for e in noted if e.messages[-1]["content"] == NEUTRAL_NOTE]) == len(noted) - len(sad)


def test_recall_examples_put_the_fact_in_the_system_prompt_and_answer_from_it(examples):
    recall = [e for e in examples if e.kind == "recall"]
    assert recall
    for e in recall:
        assert "What the user told you about themselves:" in e.messages[0]["content"]
        named = [w.strip(".!,'s") for w in e.reply.split() if w[:1].isupper()]
        assert any(w and w in e.messages[0]["content"] for w in named), e


def test_no_probe_name_or_sentence_is_trained_on(examples):
    probes = PROBES.read_text(encoding="utf-8")
    made = [e for e in examples if e.kind in ("persona", "recall", "factual")]
    for name in ("Priya", "Tomasz", "Keiko", "Pepper", "Mochi", "Lena", "Rafa", "Porto", "Clover", "Dmitri", "Maya"):
        assert name in probes  # (the probes still use it)
        assert not any(name in e.reply or name in json.dumps(e.messages) for e in made)
    probe_set = runpy.run_path(str(PROBES))["probes"]("Milo")
    # every remark, piece of news, fact told and factual question (asking a name is asked the same ways everywhere)
    told = {t for p in probe_set if p.kind != "identity" for t in (p.turns[:1] if p.kind == "recall" else p.turns)}
    said = {m["content"] for e in examples for m in e.messages if m["role"] == "user"}
    assert len(told) > 100 and not said & told


def test_dailydialog_spacing_is_joined_back():
    assert detokenize_dailydialog("Don ’ t go , Jim . I ’ m right.But why ?") == "Don't go, Jim. I'm right. But why?"


def test_the_dev_sets_are_gold_replies_from_the_dev_splits():
    dev = build_dev_sets(Config(), DEFAULT_DATA_DIR, 50, seed=0)
    assert {name: len(rows) for name, rows in dev.items()} == {"empathetic": 50, "daily": 50}
    valid = (DEFAULT_DATA_DIR / "empatheticdialogues" / "valid.jsonl").read_text(encoding="utf-8")
    assert all(json.dumps(e.reply)[1:-1] in valid and len(e.messages) == 2 for e in dev["empathetic"])
    assert any(len(e.messages) > 2 for e in dev["daily"])  # with the conversation so far


def test_train_dialogue_writes_an_adapter_metrics_and_a_model_card(tmp_path, xdg_cache_home):
    out = tmp_path / "adapter"
    command = [sys.executable, "-m", "voiceos", "train", "dialogue", "--examples", "16", "--dev-examples", "8"]
    command += ["--max-steps", "2", "--eval-every", "1", "--batch-size", "4", "--out-dir", str(out)]
    env = {"XDG_CACHE_HOME": str(xdg_cache_home), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fine-tuning the dialogue LM" in done.stderr  # the progress bar
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [e["step"] for e in metrics["evaluations"]] == [0, 1, 2]
    assert metrics["dev_base"]["empathetic"]["perplexity"] > 1 and metrics["dev_base"]["daily"]["perplexity"] > 1
    assert metrics["adapted_layers"][0] == 14 and sum(metrics["notes"].values()) >= metrics["sizes"]["train"] > 0
    assert metrics["command"].startswith("voiceos train dialogue --examples 16")
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "CC BY-NC 4.0" in card and "CC BY-NC-SA 4.0" in card and metrics["command"] in card
    assert "DailyDialog" in card and "EmpatheticDialogues" in card and "about what the user said" in card
    from voiceos.dialogue.adapter import read_adapter

    config, pairs = read_adapter(out)
    assert config["r"] == 8 and len(pairs) == 7 * 16  # every projection of layers 14-29
    # llama.cpp (the default decoder) takes the new adapter as it is: converted on first use, nothing by hand
    import gguf

    from voiceos.dialogue.lora_gguf import gguf_lora
    from voiceos.models import embedded_lm_gguf

    converted = gguf_lora(out, embedded_lm_gguf(), tmp_path / "lora-cache")
    assert len(gguf.GGUFReader(str(converted)).tensors) == 2 * 7 * 16
