"""Fine-tuning data (voiceos/dialogue/tuning_data.py) and `voiceos train dialogue` (voiceos/dialogue/train.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voiceos.config import Config
from voiceos.dialogue.tuning_data import (
    CELEBRATION,
    DEFAULT_DATA_DIR,
    SYMPATHY,
    build_dev_set,
    build_training_set,
    detokenize_dailydialog,
)

PROBES = Path(__file__).resolve().parents[1] / "benchmarks" / "conversation_probes.py"


@pytest.fixture(scope="module")
def examples():
    return build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=3)


def test_the_same_seed_builds_the_same_set_and_another_seed_another(examples):
    assert build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=3) == examples
    assert build_training_set(Config(), DEFAULT_DATA_DIR, 400, seed=4) != examples


def test_the_set_mixes_every_kind_in_its_share(examples):
    kinds = [e.kind for e in examples]
    assert len(examples) == 400
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "empathy": 200,
        "chat": 60,
        "persona": 40,
        "recall": 60,
        "factual": 40,
    }


def test_empathy_replies_meet_the_feeling_and_negative_ones_carry_the_runtime_note(examples):
    empathy = [e for e in examples if e.kind == "empathy"]
    noted = [e for e in empathy if e.messages[-1]["role"] == "system"]
    assert noted and all(e.messages[-1]["content"].startswith("Note: the user seems") for e in noted)
    assert all(SYMPATHY.search(e.reply) and not CELEBRATION.search(e.reply) for e in noted)
    assert all(e.messages[0]["role"] == "system" and "voice assistant" in e.messages[0]["content"] for e in examples)


def test_recall_examples_put_the_fact_in_the_system_prompt_and_answer_from_it(examples):
    recall = [e for e in examples if e.kind == "recall"]
    assert recall
    for e in recall:
        assert "What the user told you about themselves:" in e.messages[0]["content"]
        named = [w.strip(".!,'s") for w in e.reply.split() if w[:1].isupper()]
        assert any(w and w in e.messages[0]["content"] for w in named), e


def test_no_probe_name_or_question_is_trained_on(examples):
    probes = PROBES.read_text(encoding="utf-8")
    for name in ("Priya", "Tomasz", "Keiko", "Pepper", "Mochi", "Lena", "Rafa", "Porto", "Clover", "Dmitri"):
        assert name in probes  # (the probes still use it)
        assert not any(name in e.reply or name in json.dumps(e.messages) for e in examples if e.kind != "empathy")
    questions = {m["content"] for e in examples if e.kind == "factual" for m in e.messages if m["role"] == "user"}
    assert not [q for q in questions if f'"{q}"' in probes]


def test_dailydialog_spacing_is_joined_back():
    assert detokenize_dailydialog("Don ’ t go , Jim . I ’ m right.But why ?") == "Don't go, Jim. I'm right. But why?"


def test_the_dev_set_is_gold_listener_replies_from_the_dev_split():
    dev = build_dev_set(Config(), DEFAULT_DATA_DIR, 50, seed=0)
    assert len(dev) == 50 and all(e.kind == "empathy" for e in dev)
    valid = (DEFAULT_DATA_DIR / "empatheticdialogues" / "valid.jsonl").read_text(encoding="utf-8")
    assert all(json.dumps(e.reply)[1:-1] in valid for e in dev)


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
    assert metrics["dev_base"]["perplexity"] > 1 and metrics["adapted_layers"][0] == 14
    assert metrics["command"].startswith("voiceos train dialogue --examples 16")
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "CC BY-NC 4.0" in card and "CC BY-NC-SA 4.0" in card and metrics["command"] in card
    from voiceos.dialogue.adapter import read_adapter

    config, pairs = read_adapter(out)
    assert config["r"] == 8 and len(pairs) == 7 * 16  # every projection of layers 14-29
