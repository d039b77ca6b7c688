"""The emotion head's LoRA branch (voiceos/emotion/branch.py) on the real embedded LM: exactness against the LM's
own layers, padding, what a checkpoint holds, and training it end to end through `voiceos train`."""

from __future__ import annotations

import pytest
import torch

from voiceos.dialogue.adapter import set_adapter_enabled
from voiceos.emotion.branch import EmotionBranch, pool_states
from voiceos.emotion.features import FeatureExtractor, prompt_and_span
from voiceos.emotion.head import EmotionHead
from voiceos.emotion.labels import LABELS

LAYER = 14


def _states(lm, text: str, context=()) -> tuple[torch.Tensor, tuple[int, int]]:
    ids, span = prompt_and_span(lm, text, context)
    with torch.inference_mode():
        hidden = lm.model.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    return torch.stack([h[0] for h in hidden]), span  # (layers + 1, seq, dim)


def test_an_untrained_branch_reproduces_the_lms_own_next_layers(lm):
    """lora_b starts at zero, so two branch layers over hidden_states[14] give the base LM's hidden_states[16]: the
    copies (of the base layers, without the dialogue adapter), the rotary positions and the causal mask are the LM's
    own."""
    set_adapter_enabled(lm.model, False)
    try:
        hidden, _ = _states(lm, "I finally got the job, I can't believe it!")
    finally:
        set_adapter_enabled(lm.model, True)
    branch = EmotionBranch(lm.model, LAYER, 2, rank=8, alpha=16)
    with torch.inference_mode():
        out = branch(hidden[LAYER].unsqueeze(0), torch.tensor([hidden.shape[1]]))[0]
    torch.testing.assert_close(out, hidden[LAYER + 2], atol=1e-4, rtol=1e-4)
    # and the adapters do change it once trained (non-zero B)
    for layer in branch.layers:
        torch.nn.init.normal_(layer.self_attn.q_proj.lora_b, std=0.05)
    with torch.inference_mode():
        moved = branch(hidden[LAYER].unsqueeze(0), torch.tensor([hidden.shape[1]]))[0]
    assert (moved - hidden[LAYER + 2]).abs().max() > 1e-2


def test_padding_in_a_batch_does_not_change_any_examples_result(lm):
    branch = EmotionBranch(lm.model, LAYER, 1, rank=4, alpha=8)
    for layer in branch.layers:
        torch.nn.init.normal_(layer.mlp.down_proj.lora_b, std=0.05)
    extractor = FeatureExtractor(lm, LAYER)
    items = [("Oh no.", ()), ("My dog died this morning and I can't stop crying.", ("How are you?", "Not good."))]
    states = extractor.token_states(items)
    x, lengths, spans = states.batch([0, 1])
    assert lengths[0] < lengths[1]  # the first is padded
    with torch.inference_mode():
        batched = pool_states(branch(x, lengths), lengths, spans, "mean+last")
        for row in range(2):
            xi, li, si = states.batch([row])
            alone = pool_states(branch(xi, li), li, si, "mean+last")
            torch.testing.assert_close(batched[row], alone[0], atol=1e-4, rtol=1e-4)


def test_pooling_matches_the_features_the_linear_head_is_trained_on(lm):
    extractor = FeatureExtractor(lm, LAYER)
    items = [("That was a lovely surprise.", ()), ("Get out.", ("You again?", "Yes, me."))]
    states = extractor.token_states(items)
    x, lengths, spans = states.batch([0, 1])
    pooled = pool_states(x, lengths, spans, "mean+last")
    cached = torch.from_numpy(extractor.features(items))
    torch.testing.assert_close(pooled, cached, atol=1e-4, rtol=1e-4)


def test_a_checkpoint_holds_only_the_adapters_and_needs_its_lm(lm, tmp_path):
    head = EmotionHead(2 * 576, len(LABELS), layer=LAYER, branch_layers=1, lora_rank=4, lora_alpha=8)
    with pytest.raises(RuntimeError, match="bind"):
        head.pool(torch.zeros(1, 3, 576), torch.tensor([3]), torch.tensor([[0, 2]]))
    head.bind(lm.model)
    torch.nn.init.normal_(head.branch.layers[0].self_attn.v_proj.lora_b, std=0.05)
    head.save(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "head.safetensors"))
    branch_keys = [k for k in saved if k.startswith("branch.")]
    assert len(branch_keys) == 2 * 7 and all(k.endswith((".lora_a", ".lora_b")) for k in branch_keys)
    assert (tmp_path / "head.safetensors").stat().st_size < 1_000_000  # the frozen copies are not saved

    loaded = EmotionHead.load(tmp_path).bind(lm.model)
    hidden, span = _states(lm, "I am scared of what the doctor will say.")
    args = (hidden[LAYER].unsqueeze(0), torch.tensor([hidden.shape[1]]), torch.tensor([span]))
    with torch.inference_mode():
        head.eval()
        torch.testing.assert_close(loaded(loaded.pool(*args)), head(head.pool(*args)))


def test_training_a_branch_head_writes_a_checkpoint_the_reply_prefill_reads(lm, tmp_path):
    """`voiceos train --branch-layers 1` end to end on a small subsample (real LM states), then the checkpoint in the
    dialogue model: the reply's own prefill yields the same emotion as classify()."""
    from voiceos.emotion.classifier import EmotionClassifier, load_head
    from voiceos.emotion.train import TrainOptions, train

    options = TrainOptions(
        out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        goemotions_train=70,
        meld_train=35,
        goemotions_dev=35,
        meld_dev=14,
        layer=LAYER,
        epochs=3,
        branch_layers=1,
        lora_rank=4,
        branch_epochs=3,
        branch_patience=3,
        average_last=3,
    )
    metrics = train(options, lm, progress=False)
    assert metrics["epochs_run"] == 3 and "baseline" in metrics
    names = [h["epoch"] for h in metrics["history"]]
    assert names == [1, 2, 3, "mean of epochs 2-3", "mean of epochs 1-3"]
    best = max(metrics["history"], key=lambda h: h["dev_score"])  # the first of equals, as the trainer keeps
    assert metrics["best_epoch"] == best["epoch"]
    assert "LoRA adapters" in (tmp_path / "out" / "MODEL_CARD.md").read_text()
    cached = sorted(p.name for p in (tmp_path / "cache" / "emotion-features").glob("*.npy"))
    assert len(cached) == 8 and sum(".tokens." in name for name in cached) == 4  # states + index per set

    head, labels = load_head(tmp_path / "out")
    assert head.branch_layers == 1 and head.branch is None  # not bound until it meets its LM
    text = "Everything went wrong today and nobody even noticed."
    history = [{"role": "user", "content": "How was work?"}, {"role": "assistant", "content": "Tell me."}]
    expected = EmotionClassifier(head, labels, lm).classify([text], [("How was work?", "Tell me.")])[0]
    reply = lm.with_options(temperature=0.0)  # a copy sharing the weights: the session's LM keeps its head
    reply.attach_emotion_head(head, labels)
    seen = []
    "".join(reply.stream_reply(history, text, max_new_tokens=2, on_emotion=seen.append))
    assert len(seen) == 1 and seen[0].label == expected.label
    for name in labels:
        assert seen[0].scores[name] == pytest.approx(expected.scores[name], abs=1e-4)


def test_features_only_caches_the_token_states_that_a_later_training_run_reads_without_the_lm(
    lm, tmp_path, monkeypatch
):
    """`--features-only` (run on a big machine first) leaves the states in the cache and no checkpoint; the training
    run after it never runs the LM over the examples again."""
    from voiceos.emotion.features import FeatureExtractor
    from voiceos.emotion.train import TrainOptions, train

    options = TrainOptions(
        out_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        goemotions_train=21,
        meld_train=14,
        goemotions_dev=14,
        meld_dev=14,
        layer=LAYER,
        branch_layers=1,
        lora_rank=4,
        branch_epochs=1,
        baseline=False,
        features_only=True,
    )
    result = train(options, lm, progress=False)
    assert len(result["sizes"]) == 4 and not (tmp_path / "out").exists()
    assert len(list((tmp_path / "cache" / "emotion-features").glob("*.tokens.npy"))) == 4

    def no_lm_pass(*args, **kwargs):
        raise AssertionError("the LM ran over the examples again")

    monkeypatch.setattr(FeatureExtractor, "token_states", no_lm_pass)
    metrics = train(TrainOptions(**{**options.__dict__, "features_only": False}), lm, progress=False)
    assert metrics["epochs_run"] == 1 and (tmp_path / "out" / "head.safetensors").is_file()


def test_a_branch_checkpoint_that_does_not_fit_the_lm_fails_with_one_line(lm, tmp_path):
    import json

    from voiceos.emotion.classifier import EmotionClassifier, load_head
    from voiceos.errors import ModelLoadError

    head = EmotionHead(2 * 576, len(LABELS), layer=LAYER, branch_layers=1, lora_rank=4, lora_alpha=8).bind(lm.model)
    head.save(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps(list(LABELS)))
    config = json.loads((tmp_path / "head.json").read_text())
    for change, expected in (({"layer": 29, "branch_layers": 2}, "does not fit"), ({"lora_rank": 6}, "adapters")):
        (tmp_path / "head.json").write_text(json.dumps({**config, **change}))
        for attach in (
            lambda: lm.with_options().attach_emotion_head(*load_head(tmp_path)),
            lambda: EmotionClassifier(*load_head(tmp_path), lm),
        ):
            with pytest.raises(ModelLoadError, match=expected) as err:
                attach()
            assert "\n" not in str(err.value) and "emotion head does not fit" in str(err.value)


def test_each_corpus_can_balance_its_classes_on_its_own_power_and_weigh_in_at_its_own_share():
    from voiceos.emotion.fitting import balanced_weights, corpus_row_weights

    skewed = torch.tensor([4] * 6 + [0] * 2 + [5] * 1)  # neutral-heavy, as MELD is
    weights = balanced_weights(skewed)
    total = {c: float(weights[c] * (skewed == c).sum()) for c in (0, 4, 5)}
    assert total[0] == pytest.approx(total[4]) == pytest.approx(total[5])  # each class counts the same
    assert torch.equal(balanced_weights(skewed, 0.0), torch.ones(len(LABELS)))
    other = torch.tensor([1, 1, 2])
    rows = corpus_row_weights([other, skewed], [1.0, 0.0])
    assert rows.shape == (12,) and torch.equal(rows[3:], torch.ones(9))  # the second corpus unweighted
    assert torch.equal(rows[:3], balanced_weights(other)[other])
    scaled = corpus_row_weights([other, skewed], [1.0, 0.0], [1.0, 2.0])  # the second corpus's rows count twice
    assert torch.equal(scaled[:3], rows[:3]) and torch.equal(scaled[3:], 2 * rows[3:])


def test_averaging_checkpoints_takes_the_mean_of_weights_and_keeps_counters_from_the_last():
    from voiceos.emotion.fitting import average_states

    first = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16), "n": torch.tensor(3)}
    second = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([3.0], dtype=torch.bfloat16), "n": torch.tensor(5)}
    mean = average_states([first, second])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["h"].dtype == torch.bfloat16 and float(mean["h"]) == 2.0
    assert int(mean["n"]) == 5
    assert torch.equal(first["w"], torch.tensor([1.0, 2.0]))  # the inputs are left as they were


def test_adapters_are_made_on_the_device_and_dtype_of_the_layer_they_adapt():
    """A GPU LM's branch must get its adapters on the GPU (found on a real H200: they stayed on the CPU and the first
    emotion prefill failed with 'Expected all tensors to be on the same device'). The meta device stands in for a
    second device on this CPU-only machine."""
    from voiceos.emotion.branch import LoRALinear

    base = torch.nn.Linear(8, 4, device="meta", dtype=torch.bfloat16)
    adapted = LoRALinear(base, rank=2, alpha=4.0)
    for p in (adapted.lora_a, adapted.lora_b):
        assert p.device.type == "meta" and p.dtype == torch.bfloat16


def test_attention_pooling_starts_as_the_mean_and_a_learnt_query_weighs_the_tokens_it_points_to():
    states = torch.randn(2, 6, 8)
    lengths, spans = torch.tensor([6, 4]), torch.tensor([[1, 4], [0, 3]])
    zero = torch.zeros(8)
    torch.testing.assert_close(
        pool_states(states, lengths, spans, "attn+last", zero), pool_states(states, lengths, spans, "mean+last")
    )
    query = states[0, 2] * 100.0  # the first row's token 2, by far
    pooled = pool_states(states, lengths, spans, "attn+last", query)
    torch.testing.assert_close(pooled[0, :8], states[0, 2], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(pooled[:, 8:], states[torch.arange(2), lengths - 1])
    with pytest.raises(ValueError, match="query"):
        pool_states(states, lengths, spans, "attn+last")


def test_a_head_with_attention_pooling_saves_and_loads_its_query(tmp_path):
    head = EmotionHead(16, 7, pooling="attn+last")
    with torch.no_grad():
        head.attn_query.copy_(torch.arange(8.0))
    head.save(tmp_path)
    loaded = EmotionHead.load(tmp_path)
    torch.testing.assert_close(loaded.attn_query, torch.arange(8.0))
    assert EmotionHead(16, 7).attn_query is None  # mean+last heads (the shipped one) are unchanged
