"""Decoding straight from the GGUF's quantized blocks: matrix-vector products over Q4_1 / Q8_0 weights in float32.

Each decoded token multiplies one vector by every weight matrix. Dequantized to float32 those matrices are ~0.53 GB
for the embedded SmolLM2-135M, and a CPU decoding from them spends most of each token reading them from memory. The
GGUF holds the same weights as 4- and 8-bit blocks (Q4_1: ``w = d * q + m`` per 32 weights; Q8_0: ``w = d * q``),
~0.1 GB in all. A small C kernel (``kernels/qgemv.c``: AVX2 + FMA + F16C, or AVX-512; compiled for this CPU with the
system's C compiler on first use, kept in the cache directory, called through ctypes) computes each product from
the blocks as ``d * sum(q * x) + m * sum(x)`` in float32: the same weights and the same arithmetic as the float32
product, summed in another order (results differ by float32 rounding, ~1e-7 relative, as with another thread count).

Single-token steps (decoding) use it. Short prefills (up to 64 tokens: a turn's new text, as the prompt cache
keeps the rest) use a tiled kernel beside it where the CPU has AVX-512 (with AVX2 it measured slower than BLAS):
each tile of 4 weight rows is dequantized once to exactly the loaded float32 weights (``d * q + m`` rounded as the
GGUF reader rounds it) and multiplied with every token in float32, so it reads ~5x fewer bytes than BLAS on the
float32 weights for the same product. Longer prefills keep BLAS.

A matrix is used only after a check that its blocks reproduce the loaded weights (one product compared with the
float32 one), so a GGUF whose layout differs from what this expects just decodes as before.
Without a C compiler, on a CPU without AVX2, or for other dtypes and devices, nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import voiceos
from voiceos.cpu import c_compiler, cpu_flags, cpu_supported

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "qgemv.c"
# -march=native: the library is built on the machine that runs it (AVX-512 where the CPU has it; the cache key
# holds the CPU's flags, so a cache shared with another CPU builds its own)
CFLAGS = ("-O3", "-march=native", "-pthread", "-shared", "-fPIC")
KINDS = {"Q4_1": (0, 20), "Q8_0": (1, 34)}  # GGUF type -> (kernel kind, bytes per block of 32 weights)
MAX_ROWS = 2  # a product over at most this many tokens (decoding) runs the matrix-vector kernel
MAX_PREFILL_ROWS = 64  # up to this many (a turn's new tokens), the tiled kernel; a longer prefill goes to BLAS
TILE_X, TILE_ROWS, MAX_TILED_COLS = 4, 4, 4096  # the tiled kernel's x rows and weight rows per tile, widest input
BLOCKS_FILE = "gguf-blocks.safetensors"  # in the LM's cache directory
CHECK_TOLERANCE = 1e-4  # relative: a wrong block layout is off by O(1), float32 reordering by ~1e-6
# the llama layout in GGUF names; transformers' LlamaForCausalLM names on the right
LLAMA_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class BlockLinear(nn.Linear):
    """An ``nn.Linear`` whose single-token products read the GGUF's blocks of the same weights (see the module doc).

    It keeps the float32 ``weight`` (shared, not copied) for everything else, so state dicts, prefills, copies
    and the emotion branch's adapters see an ordinary Linear."""

    blocks: torch.Tensor  # (out_features, row bytes) uint8: the GGUF's blocks, rows in this layer's order
    kind: int
    tiles: bool  # whether the tiled kernel takes its shape (short prefills)

    @classmethod
    def wrap(cls, linear: nn.Linear, blocks: torch.Tensor, kind: int) -> BlockLinear:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias
        new.blocks, new.kind = blocks, kind
        new.tiles = (
            linear.out_features % TILE_ROWS == 0 and linear.in_features <= MAX_TILED_COLS and tiled_kernel_pays()
        )
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if x.numel() else 0
        usable = x.dtype == torch.float32 and x.device.type == "cpu" and not torch.is_grad_enabled()
        if not usable or rows == 0 or rows > (MAX_PREFILL_ROWS if self.tiles else MAX_ROWS):
            return super().forward(x)
        flat = x.reshape(rows, self.in_features)
        product = block_matvec if rows <= MAX_ROWS else block_matmul
        y = product(self.kind, self.blocks, self.out_features, flat)
        if self.bias is not None:
            y += self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


def block_matvec(kind: int, blocks: torch.Tensor, out_features: int, x: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` for ``x`` (n, in) float32 and ``W`` given as GGUF blocks (out, row bytes)."""
    return _kernel_product("qgemv", kind, blocks, out_features, x)


def block_matmul(kind: int, blocks: torch.Tensor, out_features: int, x: torch.Tensor) -> torch.Tensor:
    """``x @ W.T`` for a few rows of ``x`` (a short prefill): the blocks dequantized to the float32 weights tile by
    tile and multiplied in float32 (the float32 product in another summation order)."""
    rows = x.shape[0]
    padded = -rows % TILE_X
    if padded:
        x = torch.cat([x, x.new_zeros(padded, x.shape[1])])
    y = _kernel_product("qgemm", kind, blocks, out_features, x)
    return y[:rows] if padded else y


def _kernel_product(entry: str, kind: int, blocks: torch.Tensor, out_features: int, x: torch.Tensor) -> torch.Tensor:
    """One call of the kernel's ``entry`` (qgemv or qgemm, same arguments) into a new (n, out_features) tensor."""
    lib = kernel_library()
    if lib is None:
        raise RuntimeError("the quantized-block kernel is not available")
    x = x.contiguous()
    y = torch.empty(x.shape[0], out_features, dtype=torch.float32)
    product = getattr(lib, entry)
    product(kind, blocks.data_ptr(), out_features, x.shape[1], x.data_ptr(), x.shape[0], y.data_ptr(), _threads())
    return y


def fuse_block_rows(linears: Sequence[BlockLinear]) -> tuple[torch.Tensor, int, int] | None:
    """One block matrix with the rows of all ``linears`` (same kind and input width) after each other, and its kind
    and row count, for one product over all of them; each layer then reads its own rows as a view of it (no second
    copy). None when they differ."""
    if len({(m.kind, m.in_features, m.blocks.shape[1]) for m in linears}) != 1:
        return None
    if len(linears) == 1:
        return linears[0].blocks, linears[0].kind, linears[0].out_features
    fused = torch.cat([m.blocks for m in linears])
    start = 0
    for m in linears:
        m.blocks = fused[start : start + m.out_features]
        start += m.out_features
    return fused, linears[0].kind, start


def tiled_kernel_pays() -> bool:
    """Whether short prefills go to the tiled kernel: only in its AVX-512 build (with AVX2 it measured slower than
    BLAS on the float32 weights)."""
    lib = kernel_library()
    return lib is not None and lib.qgemm_lanes() == 16


def _threads() -> int:
    """torch's thread count, or 1 where OpenMP's workers may be spinning on the cores (see ``voiceos/__init__.py``):
    the kernel's own workers would then fight them for the CPU."""
    return max(1, torch.get_num_threads()) if voiceos.OPENMP_WAITS_PASSIVELY else 1


def kernel_library() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use into the cache directory), or None (see :func:`kernel_problem`)."""
    return load_kernel()[0]


def kernel_problem() -> str:
    """Why there is no kernel ("" when there is one): what `voiceos doctor` shows."""
    return load_kernel()[1]


@functools.cache
def load_kernel() -> tuple[ctypes.CDLL | None, str]:
    """(the library, "") or (None, why not), logged once."""
    from voiceos import models

    problem = "" if cpu_supported() else "this CPU lacks AVX2/FMA/F16C"
    compiler = c_compiler()
    if not problem and compiler is None:
        problem = "no C compiler (cc/gcc) was found; `apt-get install gcc` enables it"
    if problem:
        log.info("dialogue LM decodes from float32 weights: %s", problem)
        return None, problem
    assert compiler is not None
    source = SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join([*CFLAGS, *sorted(cpu_flags())]).encode()).hexdigest()[:12]
    target = models.cache_dir() / "kernels" / f"qgemv-{tag}.so"
    try:
        if not target.is_file():
            try:
                _compile(compiler, target)
            except PermissionError:  # a read-only cache: build it for this process only
                target = Path(tempfile.mkdtemp(prefix="voiceos-kernel-")) / target.name
                _compile(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.SubprocessError) as err:
        problem = f"the block kernel could not be built ({err})"
        log.warning("dialogue LM decodes from float32 weights: %s", problem)
        return None, problem
    lib.qgemv.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_int,
    ]
    lib.qgemv.restype = None
    lib.qgemm.argtypes = lib.qgemv.argtypes
    lib.qgemm.restype = None
    lib.qgemm_lanes.argtypes, lib.qgemm_lanes.restype = [], ctypes.c_int
    return lib, ""


def _compile(compiler: str, target: Path) -> None:
    """Compile to a temporary file beside ``target``, then rename it into place (no reader sees half a library)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".qgemv-", suffix=".so")
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *CFLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            raise subprocess.SubprocessError(f"{Path(compiler).name}: {reason}")
        os.replace(tmp, target)
        log.info("built the quantized-block kernel %s", target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def use_gguf_blocks(model: Any, gguf: Path, cache_dir: Path | None = None) -> int:
    """Let ``model``'s single-token products read ``gguf``'s Q4_1/Q8_0 blocks; the number of matrices that do.

    Only a float32 llama-layout model on the CPU qualifies, and only matrices whose blocks pass the check. The
    blocks are read from ``cache_dir/BLOCKS_FILE`` when an earlier load saved them there (parsing the GGUF's
    header and vocabulary takes ~3 s), else from the GGUF, and then saved there."""
    if model.dtype != torch.float32 or model.device.type != "cpu" or kernel_library() is None:
        return 0
    cached = cache_dir / BLOCKS_FILE if cache_dir is not None else None
    found = _read_cached(cached) if cached is not None and cached.is_file() else None
    if found is None:
        found = _read_gguf(model, gguf)
        if cached is not None and found:
            _save(found, cached)
    used = 0
    for path, (blocks, kind) in found.items():
        parent_path, _, attr = path.rpartition(".")
        try:
            parent = model.get_submodule(parent_path)
        except AttributeError:
            continue
        linear = getattr(parent, attr, None)
        if not isinstance(linear, nn.Linear) or blocks.shape[0] != linear.out_features:
            continue
        if _reproduces(linear, blocks, kind):
            setattr(parent, attr, BlockLinear.wrap(linear, blocks, kind))
            used += 1
        else:
            log.warning("the GGUF blocks of %s do not match the loaded weights; it decodes from float32", path)
    return used


def _read_gguf(model: Any, gguf: Path) -> dict[str, tuple[torch.Tensor, int]]:
    """Module path -> (blocks in the module's row order, kernel kind) for every matrix the kernel can read."""
    import numpy as np
    from gguf import GGUFReader

    tensors = {t.name: t for t in GGUFReader(str(gguf)).tensors}
    config = model.config
    found: dict[str, tuple[torch.Tensor, int]] = {}
    for path, gguf_name in _targets(model, tensors):
        tensor = tensors[gguf_name]
        kind = KINDS.get(tensor.tensor_type.name)
        linear = model.get_submodule(path)
        if kind is None or linear.in_features % 32:
            continue
        rows = np.array(tensor.data, dtype=np.uint8, copy=True).reshape(linear.out_features, -1)  # writable
        blocks = torch.from_numpy(rows)
        if path.endswith(("q_proj", "k_proj")):  # transformers un-permutes llama.cpp's rotary row order for these
            heads = config.num_attention_heads if path.endswith("q_proj") else config.num_key_value_heads
            blocks = _reverse_permute_rows(blocks, heads)
        found[path] = (blocks, kind[0])
    return found


def _read_cached(file: Path) -> dict[str, tuple[torch.Tensor, int]] | None:
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            kinds = json.loads((f.metadata() or {}).get("kinds", "{}"))
            return {name: (f.get_tensor(name), int(kinds[name])) for name in f.keys()}  # noqa: SIM118
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        log.warning("ignoring the unreadable block cache %s (%s)", file, err)
        return None


def _save(found: dict[str, tuple[torch.Tensor, int]], file: Path) -> None:
    """Best effort, atomically (temporary sibling, then rename): a read-only cache only costs time."""
    from safetensors.torch import save_file

    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        kinds = json.dumps({name: kind for name, (_, kind) in found.items()})
        save_file({name: blocks for name, (blocks, _) in found.items()}, str(tmp), metadata={"kinds": kinds})
        os.replace(tmp, file)
    except OSError as err:
        log.info("could not cache the GGUF blocks in %s (%s)", file, err)
    finally:
        tmp.unlink(missing_ok=True)


def _targets(model: Any, tensors: dict[str, Any]) -> list[tuple[str, str]]:
    """(module path, GGUF tensor name) for every decoder projection and the output matrix that both have."""
    found: list[tuple[str, str]] = []
    layers = getattr(getattr(model, "model", None), "layers", None)
    for i, layer in enumerate(layers if layers is not None else ()):
        for gguf_part, path in LLAMA_NAMES.items():
            name = f"blk.{i}.{gguf_part}.weight"
            part, attr = path.split(".")
            if name in tensors and isinstance(getattr(getattr(layer, part, None), attr, None), nn.Linear):
                found.append((f"model.layers.{i}.{path}", name))
    output = "output.weight" if "output.weight" in tensors else "token_embd.weight"  # tied embeddings
    if output in tensors and isinstance(getattr(model, "lm_head", None), nn.Linear):
        found.append(("lm_head", output))
    return found


def _reverse_permute_rows(blocks: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' ``reverse_permute_weights`` for llama q/k, applied to whole block rows."""
    rows = blocks.shape[0]
    dim = rows // heads // 2
    order = torch.arange(rows).reshape(heads, dim, 2).transpose(1, 2).reshape(rows)
    return blocks[order].contiguous()


def _reproduces(linear: nn.Linear, blocks: torch.Tensor, kind: int) -> bool:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, linear.in_features, generator=generator)
    with torch.no_grad():
        want = x @ linear.weight.T
    got = block_matvec(kind, blocks, linear.out_features, x)
    return bool((got - want).abs().max() <= CHECK_TOLERANCE * want.abs().max().clamp(min=1e-12))


def without_blocks(model: Any) -> Any:
    """A copy of ``model`` whose products all use the float32 weights (the baseline beside the kernel in benches)."""
    import copy

    clone = copy.deepcopy(model)
    for path, module in list(clone.named_modules()):
        if isinstance(module, BlockLinear):
            parent_path, _, attr = path.rpartition(".")
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
            plain.weight, plain.bias = module.weight, module.bias
            setattr(clone.get_submodule(parent_path), attr, plain)
    return clone
