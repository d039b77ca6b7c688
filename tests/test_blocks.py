"""The GGUF block kernel (voiceos/dialogue/blocks.py) on the real embedded SmolLM2: every matrix it reads gives the
float32 product, greedy replies stay the same, and whatever cannot use it decodes from the float32 weights."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from voiceos import models
from voiceos.bench_lm import AGREEMENT_PROMPTS
from voiceos.dialogue import blocks
from voiceos.dialogue.blocks import BlockLinear, block_matmul, block_matvec, use_gguf_blocks, without_blocks
from voiceos.dialogue.lm import DialogueLM

pytestmark = pytest.mark.skipif(not blocks.cpu_supported(), reason="the block kernel needs x86-64 with AVX2")


@pytest.fixture(scope="module")
def plain_lm(lm: DialogueLM) -> DialogueLM:
    """The session's LM with every product on its float32 weights (a copy; the session's model is untouched)."""
    return DialogueLM(without_blocks(lm.model), lm.tokenizer, lm.options, name=lm.name, source=lm.source)


def _block_layers(model: nn.Module) -> dict[str, BlockLinear]:
    """By projection path (an adapted projection's base keeps its path: the adapter adds ``.base``)."""
    return {name.removesuffix(".base"): m for name, m in model.named_modules() if isinstance(m, BlockLinear)}


def test_every_projection_and_the_output_matrix_of_the_embedded_lm_reads_its_gguf_blocks(lm: DialogueLM) -> None:
    assert blocks.kernel_library() is not None, "no C compiler: `make install` installs gcc"
    config = lm.model.config
    expected = config.num_hidden_layers * len(blocks.LLAMA_NAMES) + 1  # + the (tied) output matrix
    assert lm.block_matrices == expected
    assert len(_block_layers(lm.model)) == expected
    assert isinstance(lm.model.lm_head, BlockLinear)


def test_block_products_are_as_exact_as_the_float32_products(lm: DialogueLM) -> None:
    """Against a float64 product of the same weights, on the scale of sum(|w x|) (what float32 rounding depends
    on): blocks read in the wrong order or with a wrong scale would be off by ~1 on that scale."""
    generator = torch.Generator().manual_seed(1)
    worst = {"blocks": 0.0, "float32": 0.0, "tiled": 0.0}
    for name, layer in _block_layers(lm.model).items():
        weight = layer.weight.detach()
        x = torch.randn(2, layer.in_features, generator=generator)
        tokens = torch.randn(5, layer.in_features, generator=generator)  # a short prefill (padded to 8 rows)
        for variant, inputs, got in (
            ("blocks", x, block_matvec(layer.kind, layer.blocks, layer.out_features, x)),
            ("float32", x, x @ weight.T),
            ("tiled", tokens, block_matmul(layer.kind, layer.blocks, layer.out_features, tokens)),
        ):
            exact = inputs.double() @ weight.double().T
            scale = inputs.abs().double() @ weight.abs().double().T
            error = ((got.double() - exact).abs() / scale).max().item()
            worst[variant] = max(worst[variant], error)
            assert error < 1e-5, f"{name} ({variant}): error {error:.2e} of sum |w x|"
    assert worst["blocks"] < 10 * worst["float32"] and worst["tiled"] < 10 * worst["float32"], worst


def test_the_tiled_kernel_multiplies_by_exactly_the_loaded_float32_weights(lm: DialogueLM) -> None:
    """Unit vectors pick single weights out: the tiled kernel's dequantized blocks must equal the float32 weights
    bit for bit (Q4_1 ``d * q + m`` rounded as the GGUF reader rounds it, and Q8_0)."""
    layers = _block_layers(lm.model)
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.17.mlp.down_proj", "lm_head"):
        layer = layers[name]
        columns = torch.tensor([0, 31, 32, 100, layer.in_features - 1])
        unit = torch.zeros(len(columns), layer.in_features)
        unit[torch.arange(len(columns)), columns] = 1.0
        got = block_matmul(layer.kind, layer.blocks, layer.out_features, unit)
        assert torch.equal(got, layer.weight.detach()[:, columns].T), name


def test_decoding_from_blocks_writes_the_same_greedy_replies_as_the_float32_weights(
    lm: DialogueLM, plain_lm: DialogueLM
) -> None:
    assert not _block_layers(plain_lm.model)
    fast, slow = lm.with_options(temperature=0.0), plain_lm.with_options(temperature=0.0)
    for text in AGREEMENT_PROMPTS[:4]:
        "".join(fast.stream_reply([], text, max_new_tokens=32))
        "".join(slow.stream_reply([], text, max_new_tokens=32))
        assert fast.last_stats.token_ids == slow.last_stats.token_ids, text


def test_blocks_that_do_not_reproduce_the_weights_are_refused_and_the_rest_are_used(
    lm: DialogueLM, plain_lm: DialogueLM, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """Read through the block cache file: a q_proj whose rows are in llama.cpp's rotary order (not un-permuted as
    transformers does) must be refused, the down_proj beside it used."""
    source = _block_layers(lm.model)
    q, down = "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"
    wrong = torch.roll(source[q].blocks, 1, dims=0)
    blocks._save(
        {q: (wrong, source[q].kind), down: (source[down].blocks, source[down].kind)}, tmp_path / blocks.BLOCKS_FILE
    )
    model = without_blocks(plain_lm.model)
    with caplog.at_level(logging.WARNING, logger="voiceos.dialogue.blocks"):
        used = use_gguf_blocks(model, models.embedded_lm_gguf(), tmp_path)
    assert used == 1
    assert isinstance(model.get_submodule(down), BlockLinear)
    assert type(model.get_submodule(q)) is nn.Linear
    assert any(q in r.getMessage() for r in caplog.records)


def test_long_prefills_and_other_dtypes_use_the_float32_weights(
    lm: DialogueLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = lm.model.get_submodule("model.layers.3.mlp.up_proj")
    calls: list[str] = []
    for name in ("block_matvec", "block_matmul"):
        kernel = getattr(blocks, name)
        monkeypatch.setattr(blocks, name, lambda *args, name=name, kernel=kernel: calls.append(name) or kernel(*args))
    with torch.inference_mode():
        long_prefill = torch.randn(1, blocks.MAX_PREFILL_ROWS + 1, layer.in_features)
        assert torch.equal(layer(long_prefill), nn.functional.linear(long_prefill, layer.weight))
        copy = without_blocks(nn.Sequential(layer)).to(torch.bfloat16)[0]  # a reduced-precision copy of it
        assert isinstance(copy, nn.Linear) and copy(long_prefill[0, :1].bfloat16()).dtype == torch.bfloat16
        assert calls == []
        short = long_prefill[:, :7]  # the tiled kernel where it pays (AVX-512), else BLAS
        torch.testing.assert_close(layer(short), nn.functional.linear(short, layer.weight), rtol=1e-5, atol=1e-5)
        layer(short[0, :1])  # one token
    assert layer.tiles == blocks.tiled_kernel_pays()
    assert calls == ["block_matmul", "block_matvec"] if layer.tiles else ["block_matvec"]


def test_without_a_c_compiler_the_lm_decodes_from_its_float32_weights_and_says_why(
    test_config, device_plan, monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where no kernel was built before
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    blocks.load_kernel.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="voiceos.dialogue.blocks"):
            lm = DialogueLM.load(test_config.dialogue, device_plan)
        assert lm.block_matrices == 0 and not _block_layers(lm.model)
        assert lm.reply([], "Hi!", max_new_tokens=8)
    finally:
        blocks.load_kernel.cache_clear()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "voiceos.dialogue.blocks"]
    assert "could not be built" in warning and "no-such-cc" in warning and "\n" not in warning


def test_the_kernels_threads_give_the_same_products_from_any_number_of_callers(lm: DialogueLM) -> None:
    """The kernel's own thread pool: 1 or 2 threads give bit-identical rows; callers on several Python threads at
    once (one gets the pool, the others run alone) and a forked child (whose pool did not come along) all get
    the right products."""
    import concurrent.futures
    import multiprocessing

    layer = lm.model.get_submodule("model.layers.5.mlp.gate_proj")
    lib = blocks.kernel_library()
    assert lib is not None
    x = torch.randn(8, layer.in_features, generator=torch.Generator().manual_seed(3))
    by_threads = []
    for threads in (1, 2, 3):
        y = torch.empty(1, layer.out_features)
        lib.qgemv(layer.kind, layer.blocks.data_ptr(), layer.out_features, layer.in_features, x.data_ptr(), 1,
                  y.data_ptr(), threads)  # fmt: skip
        by_threads.append(y)
    assert torch.equal(by_threads[0], by_threads[1]) and torch.equal(by_threads[0], by_threads[2])
    want = [block_matvec(layer.kind, layer.blocks, layer.out_features, row[None]) for row in x]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            got = list(pool.map(lambda row: block_matvec(layer.kind, layer.blocks, layer.out_features, row[None]), x))
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    with multiprocessing.get_context("fork").Pool(1) as child:
        assert child.apply(_product_sum, (layer.kind, layer.blocks, layer.out_features, x[:1])) == float(want[0].sum())


def _product_sum(kind: int, blocks_: torch.Tensor, rows: int, x: torch.Tensor) -> float:
    return float(block_matvec(kind, blocks_, rows, x).sum())


def test_openmp_waits_passively_so_the_kernels_workers_have_the_cores() -> None:
    """Set by `import voiceos` before torch loads (see voiceos/__init__.py); without it the kernel runs alone."""
    import os

    import voiceos

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert voiceos.OPENMP_WAITS_PASSIVELY
    assert blocks._threads() == torch.get_num_threads()
