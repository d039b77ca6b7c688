"""The emotion head: corpus readers, the shipped checkpoint, and its one-pass use from the dialogue prefill."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from voiceos.emotion.data import DEFAULT_DATA_DIR, read_goemotions, read_meld
from voiceos.emotion.labels import LABELS


def test_goemotions_reader_parses_the_real_files():
    train = read_goemotions(DEFAULT_DATA_DIR / "goemotions_ekman" / "train.tsv")
    dev = read_goemotions(DEFAULT_DATA_DIR / "goemotions_ekman" / "dev.tsv")
    assert (len(train), len(dev)) == (39555, 4946)  # single-label rows; multi-label rows are skipped
    assert len(read_goemotions(DEFAULT_DATA_DIR / "goemotions_ekman" / "dev.tsv", multi_label="first")) == 5426
    assert set(Counter(ex.label for ex in train)) == set(range(len(LABELS)))
    assert all(ex.text and ex.context == () for ex in dev)


def test_meld_reader_parses_the_real_files_with_context():
    train = read_meld(DEFAULT_DATA_DIR / "meld" / "train_sent_emo.csv")
    dev = read_meld(DEFAULT_DATA_DIR / "meld" / "dev_sent_emo.csv", context_turns=3)
    assert (len(train), len(dev)) == (9989, 1109)
    assert {LABELS[ex.label] for ex in train} == set(LABELS)
    assert train[0].context == () and train[1].context == (train[0].text,)
    assert max(len(ex.context) for ex in dev) == 3
    assert "\u2019" not in "".join(ex.text for ex in train)  # typographic quotes normalized
    assert all(ex.context_roles == () for ex in train)  # alternating roles unless asked


def test_meld_speaker_roles_make_the_speakers_own_turns_user_turns(tmp_path):
    from voiceos.emotion.features import history_from_context

    csv_text = (
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
        "1,Hi.,Ross,neutral,neutral,0,0\n"
        "2,Hey!,Rachel,joy,positive,0,1\n"
        "3,You look great.,Ross,joy,positive,0,2\n"
        "4,Thanks. Really?,Ross,surprise,positive,0,3\n"
        "5,New scene.,Monica,neutral,neutral,1,0\n"
    )
    path = tmp_path / "dev_sent_emo.csv"
    path.write_text(csv_text, encoding="utf-8")
    rows = read_meld(path, context_turns=2, speaker_roles=True)
    assert [ex.context_roles for ex in rows] == [(), ("assistant",), ("user", "assistant"), ("assistant", "user"), ()]
    assert rows[3].context == ("Hey!", "You look great.")
    assert history_from_context(rows[3].context, rows[3].context_roles) == [
        {"role": "assistant", "content": "Hey!"},
        {"role": "user", "content": "You look great."},
    ]
    assert [m["role"] for m in history_from_context(rows[3].context)] == ["user", "assistant"]  # alternating


@pytest.fixture(scope="module")
def classifier(lm):
    from voiceos.emotion.classifier import EmotionClassifier

    return EmotionClassifier.load(None, lm)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I am so happy, this is wonderful!", "joy"),
        ("I'm terrified of what happens next", "fear"),
        ("This is disgusting", "disgust"),
        ("I can't believe you did that, I'm furious", "anger"),
        ("My dog died yesterday", "sadness"),
    ],
)
def test_shipped_checkpoint_classifies_clear_sentences(classifier, text, label):
    assert classifier.classify([text])[0].label == label


def test_reply_prefill_yields_the_same_emotion_as_classify(classifier, lm):
    history = [{"role": "user", "content": "We got the test results."}, {"role": "assistant", "content": "And?"}]
    text = "I passed! I can't believe it, this is the best day ever!"
    seen = []
    reply = lm.with_options(temperature=0.0)
    deltas = reply.stream_reply(history, text, max_new_tokens=2, on_emotion=lambda result: seen.append(result))
    "".join(deltas)
    direct = classifier.classify([text, "Okay."], [("We got the test results.", "And?"), ()])[0]
    assert len(seen) == 1 and seen[0].label == direct.label
    for name in LABELS:
        assert seen[0].scores[name] == pytest.approx(direct.scores[name], abs=1e-4)


def test_split_prefill_gives_the_same_next_token_logits_as_one_pass(lm):
    history = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello! How can I help?"}]
    messages = lm.messages_for(history, "What is the capital of France?")
    ids = lm.build_prompt(messages)
    one_pass = lm.prefill(ids).logits
    split, _cache, prompt = lm._prefill_with_emotion(messages, ids, lambda result: None)
    assert prompt.tolist() == ids.tolist()
    assert torch.allclose(split, one_pass, atol=1e-3)
    assert split.argmax() == one_pass.argmax()


def test_emotion_note_joins_the_context_after_the_users_turn(lm):
    text = "My grandmother passed away this morning."
    plain = lm.with_options(temperature=0.0)
    "".join(plain.stream_reply([], text, max_new_tokens=1))
    without_note = plain.last_stats.prompt_tokens
    note = "The user sounds sad. Acknowledge that briefly and kindly, then help."
    "".join(plain.stream_reply([], text, max_new_tokens=1, on_emotion=lambda result: note))
    assert plain.last_stats.prompt_tokens == without_note + lm.count_tokens(f"<|im_start|>system\n{note}<|im_end|>\n")


def test_emotion_hook_is_not_called_without_a_head(test_config, device_plan, lm):
    from voiceos.dialogue.lm import DialogueLM

    bare = DialogueLM(lm.model, lm.tokenizer, lm.options, name=lm.name, source=lm.source)
    calls = []
    "".join(bare.stream_reply([], "Hello there.", max_new_tokens=1, on_emotion=calls.append))
    assert calls == [] and not bare.has_emotion_head


def test_a_head_for_another_model_is_refused_with_one_line(lm):
    from voiceos.emotion.head import EmotionHead
    from voiceos.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="does not fit the dialogue model"):
        lm.dialogue_model.fits(EmotionHead(100, 7), LABELS) or lm.attach_emotion_head(EmotionHead(100, 7), LABELS)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from voiceos.emotion.classifier import load_head
    from voiceos.errors import ModelLoadError

    (tmp_path / "labels.json").write_text("[]")
    (tmp_path / "head.json").write_text('{"in_dim": 4, "n_labels": 7}')
    (tmp_path / "head.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_head(tmp_path)
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        load_head(tmp_path / "missing")


def test_checkpoint_metrics_are_reproduced(classifier):
    from voiceos.emotion.classifier import DEFAULT_CHECKPOINT

    metrics = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["labels"] == list(LABELS)
    rows = metrics["check"]
    results = classifier.classify([r["text"] for r in rows], [tuple(r["context"]) for r in rows])
    agree = sum(res.label == r["pred"] for res, r in zip(results, rows, strict=True)) / len(rows)
    assert agree >= 0.95  # the recorded predictions are reproduced (float noise may flip a near tie)
    assert {r["corpus"] for r in rows} == {"goemotions", "meld"}
    accuracy = sum(res.label == r["label"] for res, r in zip(results, rows, strict=True)) / len(rows)
    claimed = (metrics["dev"]["goemotions"]["accuracy"] + metrics["dev"]["meld"]["accuracy"]) / 2
    assert accuracy == pytest.approx(claimed, abs=0.2)  # a small fixed subsample agrees with the claimed figures


def test_evaluating_the_shipped_head_scores_the_classifiers_own_predictions(classifier, lm, tmp_path):
    from voiceos.emotion.classifier import DEFAULT_CHECKPOINT
    from voiceos.emotion.evaluate import dev_sets, evaluate_checkpoint, trained_meld_context
    from voiceos.emotion.fitting import f1_scores

    result = evaluate_checkpoint(lm, goemotions=21, meld=14, cache_dir=tmp_path, progress=False)
    rows = dev_sets(DEFAULT_DATA_DIR, goemotions=21, meld=14, **trained_meld_context(DEFAULT_CHECKPOINT))
    for corpus, examples in (("goemotions", rows["goemotions_dev"]), ("meld", rows["meld_dev"])):
        predicted = classifier.classify([ex.text for ex in examples], [ex.context for ex in examples])
        expected = f1_scores([ex.label for ex in examples], [LABELS.index(res.label) for res in predicted])
        assert result[corpus]["n"] == len(examples)
        assert result[corpus]["macro_f1"] == pytest.approx(expected["macro_f1"], abs=0.1)  # a near tie may flip
        assert result[corpus]["accuracy"] == pytest.approx(expected["accuracy"], abs=0.1)


@pytest.mark.parametrize("hidden_units", [0, 32])
def test_training_writes_a_checkpoint_that_loads_and_is_reproduced_from_the_feature_cache(lm, tmp_path, hidden_units):
    """`voiceos train` end to end on a small stratified subsample of both corpora (the real LM computes features)."""
    from voiceos.emotion.classifier import EmotionClassifier, load_head
    from voiceos.emotion.train import TrainOptions, train

    options = TrainOptions(
        out_dir=str(tmp_path / "first"),
        cache_dir=str(tmp_path / "cache"),
        goemotions_train=140,
        meld_train=70,
        goemotions_dev=70,
        meld_dev=35,
        layer=14,
        epochs=6,
        patience=3,
        hidden_units=hidden_units,
        command="python -m voiceos.emotion.train ...",
    )
    first = train(options, lm, progress=False)
    files = {p.name for p in (tmp_path / "first").iterdir()}
    assert {"head.safetensors", "head.json", "labels.json", "metrics.json", "MODEL_CARD.md"} <= files
    asked = {"goemotions_train": 140, "meld_train": 70, "goemotions_dev": 70, "meld_dev": 35}
    assert all(abs(first["sizes"][k] - n) <= 2 for k, n in asked.items()), first["sizes"]  # stratified: rounded
    assert 1 <= first["best_epoch"] <= first["epochs_run"] <= 6 and "baseline" in first
    assert (tmp_path / "first" / "MODEL_CARD.md").read_text().count("python -m voiceos.emotion.train ...") == 1
    cached = sorted((tmp_path / "cache" / "emotion-features").glob("*.npy"))
    assert len(cached) == 4  # one file per set: the LM ran once per example

    second = train(TrainOptions(**{**options.__dict__, "out_dir": str(tmp_path / "second")}), lm, progress=False)
    assert sorted((tmp_path / "cache" / "emotion-features").glob("*.npy")) == cached
    assert second["dev"] == first["dev"] and second["best_epoch"] == first["best_epoch"]  # fixed seeds

    head, labels = load_head(tmp_path / "first")
    assert labels == LABELS and head.hidden_units == hidden_units and head.layer == 14
    again, _ = load_head(tmp_path / "second")
    for (name, a), (_, b) in zip(head.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    results = EmotionClassifier(head, labels, lm).classify(["I am so happy today!", "That is awful."])
    assert all(abs(sum(r.scores.values()) - 1) < 1e-3 for r in results)


def test_the_recorded_training_command_leaves_out_local_paths():
    from voiceos.emotion.train import recorded_arguments

    argv = ["--layer", "14", "--out-dir", "/work/runs/x", "--cache-dir=/tmp/c", "--branch-layers", "2"]
    assert recorded_arguments(argv) == ["--layer", "14", "--branch-layers", "2"]
