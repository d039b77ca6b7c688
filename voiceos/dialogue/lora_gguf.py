"""The dialogue adapter (peft's LoRA safetensors) as a GGUF LoRA adapter that llama.cpp applies to the GGUF model.

llama.cpp loads LoRA adapters from GGUF files of ``general.type`` ``adapter``: for each adapted weight ``W`` of the
base GGUF (``blk.14.attn_q.weight``), a pair ``<name>.lora_a`` (rank x in) and ``<name>.lora_b`` (out x rank), and
``adapter.lora.alpha``; it adds ``(x A^T) B^T * alpha / rank``, as peft does. peft's module paths become GGUF tensor
names through the ``gguf`` package's own name map. One thing differs between the two layouts: the GGUF converter of
a llama-architecture model permutes the rows of ``q_proj`` and ``k_proj`` (llama.cpp applies rotary embeddings to
adjacent pairs, transformers to the two halves of each head), and transformers undoes it when it loads a GGUF. The
``lora_b`` of those projections (its rows are the projection's outputs) is permuted the same way here.

The file is made from whatever adapter directory is configured, the first time it is needed, and cached under the
cache directory keyed by a hash of the adapter's files and the base GGUF's identity, so a retrained adapter
(``voiceos train dialogue``) is converted again on its first load and nothing is made by hand.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path

import numpy as np

from voiceos.dialogue.adapter import CONFIG_FILE, WEIGHTS_FILE, AdapterError, read_adapter

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the conversion changes: older cached files are then made again
ROTARY_PERMUTED = {"q_proj": "attention.head_count", "k_proj": "attention.head_count_kv"}  # -> the GGUF's head count


def gguf_lora(adapter_dir: Path, base_gguf: Path, cache_root: Path) -> Path:
    """The GGUF LoRA file for ``adapter_dir`` on ``base_gguf``: from the cache, else converted and cached."""
    target = cache_root / f"{adapter_dir.name}-{_key(adapter_dir, base_gguf)}.gguf"
    if target.is_file():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        count = write_gguf_lora(adapter_dir, base_gguf, partial)
        os.replace(partial, target)  # whole or absent: a crash leaves no half-written adapter behind
    finally:
        partial.unlink(missing_ok=True)
    log.info("dialogue adapter %s converted for llama.cpp (%d weight pairs): %s", adapter_dir, count, target)
    return target


def write_gguf_lora(adapter_dir: Path, base_gguf: Path, out: Path) -> int:
    """Write ``adapter_dir``'s LoRA pairs as a GGUF adapter for ``base_gguf``; the number of pairs written."""
    import gguf

    config, pairs = read_adapter(adapter_dir)  # B comes scaled by alpha / r: alpha = r below keeps the scale 1
    rank = int(config["r"])
    arch, fields = _base_metadata(base_gguf)
    model_arch = next((key for key, name in gguf.MODEL_ARCH_NAMES.items() if name == arch), None)
    if model_arch is None or "block_count" not in fields:
        raise AdapterError(f"{base_gguf.name}: the gguf package does not know its architecture {arch!r}")
    names = gguf.get_tensor_name_map(model_arch, fields["block_count"])
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for path, (down, up) in sorted(pairs.items()):
        name = names.get_name(path + ".weight", try_suffixes=(".weight",))
        if name is None:
            raise AdapterError(f"dialogue adapter {adapter_dir} adapts {path}, which has no tensor in {base_gguf.name}")
        up_rows = up.numpy().astype(np.float32)
        heads_key = ROTARY_PERMUTED.get(path.rpartition(".")[2]) if arch == "llama" else None
        if heads_key is not None:
            up_rows = rotary_permuted(up_rows, int(fields[heads_key]))
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(down.numpy().astype(np.float32)))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(up_rows))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(pairs)


def rotary_permuted(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """The row order llama's GGUF converter gives a q or k projection: within each head, the interleaved pairs of
    the rotary embedding instead of its two halves."""
    head_rows = rows.shape[0] // n_heads
    return rows.reshape(n_heads, 2, head_rows // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _base_metadata(base_gguf: Path) -> tuple[str, dict[str, int]]:
    """The GGUF's architecture and its ``<arch>.block_count``, ``.attention.head_count(_kv)`` values."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise ValueError(f"{base_gguf}: no {gguf.Keys.General.ARCHITECTURE} in the GGUF")
    arch = str(arch_field.contents())
    fields = {}
    for key in ("block_count", "attention.head_count", "attention.head_count_kv"):
        field = reader.get_field(f"{arch}.{key}")
        if field is not None:
            fields[key] = int(field.contents())
    return arch, fields


def _key(adapter_dir: Path, base_gguf: Path) -> str:
    digest = hashlib.sha256(f"v{FORMAT_VERSION}:{base_gguf.name}:{base_gguf.stat().st_size}".encode())
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        path = adapter_dir / name
        if not path.is_file():
            raise AdapterError(f"dialogue adapter {adapter_dir} has no {CONFIG_FILE} and {WEIGHTS_FILE}")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
