"""Loading dialogue models: transformers' own loaders for hub ids and local directories, and for a GGUF a
dequantize-once cache.

transformers dequantizes a GGUF to fp32 on every load (~30 s here), so the first load saves the dequantized weights
and tokenizer as safetensors under the cache directory, atomically (temporary sibling directory, then rename), and
later loads read them back in well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from voiceos.errors import ModelNotFoundError

log = logging.getLogger(__name__)

CACHE_MARKER = "voiceos-cache.json"  # written last: a cache directory without it is incomplete
_TMP_TAG = ".tmp-"
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def from_pretrained(source: str, name: str, dtype: torch.dtype, **kwargs: Any) -> tuple[Any, Any]:
    """transformers' own loaders (which download hub ids where the network allows); a failure becomes one line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs), tokenizer
    except (OSError, ValueError, KeyError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelNotFoundError(f"dialogue model '{name}' could not be loaded: {reason}") from err


def cache_key(gguf: Path) -> str:
    """``<stem>-<hash>``; the hash covers the file's size and modification time, so a new copy is converted again."""
    stat = gguf.stat()
    return f"{gguf.stem}-{hashlib.sha256(f'{gguf.name}:{stat.st_size}:{stat.st_mtime_ns}'.encode()).hexdigest()[:12]}"


@contextlib.contextmanager
def _quiet_transformers_progress() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def cache_complete(path: Path) -> bool:
    return (path / CACHE_MARKER).is_file() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def load_gguf_cached(gguf: Path, cache_root: Path, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """The dequantized model from the cache; on the first load, convert the GGUF and fill the cache."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root / cache_key(gguf)
    _remove_stale_tmp_dirs(cache_root)
    if cache_complete(target):
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(target))
            with _quiet_transformers_progress():  # a local read of < 1 s: its bar is noise in `voiceos say`
                model = AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)
            return model, tokenizer, str(target)
        except Exception as err:  # any damage to the cache means: build it again
            log.warning("LM cache %s is unreadable (%s); converting %s again", target, err, gguf.name)
            shutil.rmtree(target, ignore_errors=True)
    model, tokenizer = _convert_gguf(gguf, target)
    return model, tokenizer, str(target) if cache_complete(target) else str(gguf)


def _convert_gguf(gguf: Path, target: Path) -> tuple[Any, Any]:
    """Dequantize ``gguf`` (slow), then save it under ``target`` (best effort: a read-only cache only costs time)."""
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("first load of %s: dequantizing and caching it in %s (later loads take a few seconds)", gguf.name, target)
    with tqdm(total=3, desc=f"preparing {gguf.name} (first run only)", unit="step", disable=None) as bar:
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        ensure_chat_template(tokenizer, gguf.name, gguf=gguf)  # before saving, so that the cache holds it
        bar.update()
        bar.set_postfix_str("dequantize")
        model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # the weights are plain tensors now: save and reload them as such
        model.is_quantized = False  # set by the GGUF quantizer; left True, it made the first load ignore the dtype
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        bar.update()
        bar.set_postfix_str("save")
        try:
            _save_atomically(model, tokenizer, gguf, target)
        except OSError as err:
            log.warning("could not cache the dequantized LM in %s (%s); the next load converts it again", target, err)
        bar.update()
    return model, tokenizer


def _save_atomically(model: Any, tokenizer: Any, gguf: Path, target: Path) -> None:
    """Write into a temporary sibling directory and rename it into place, so no reader sees a half-written cache."""
    tmp = target.parent / f".{target.name}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        marker = {"source": str(gguf), "size": gguf.stat().st_size, "mtime_ns": gguf.stat().st_mtime_ns}
        (tmp / CACHE_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if target.exists() and not cache_complete(target):
            shutil.rmtree(target)  # incomplete, and not ours: replace it
        try:
            os.rename(tmp, target)
        except OSError:
            if not cache_complete(target):
                raise
            log.info("another process cached %s first", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for other in target.parent.glob(f"{gguf.stem}-*/{CACHE_MARKER}"):  # caches of an older copy of this same file
        try:
            stale = other.parent != target and json.loads(other.read_text(encoding="utf-8"))["source"] == str(gguf)
        except (OSError, ValueError, KeyError):
            stale = False
        if stale:
            log.info("removing the stale LM cache %s", other.parent)
            shutil.rmtree(other.parent, ignore_errors=True)


def _remove_stale_tmp_dirs(cache_root: Path) -> None:
    """Delete temporary directories left by interrupted conversions (those whose process is gone)."""
    for path in cache_root.glob(f".*{_TMP_TAG}*") if cache_root.is_dir() else ():
        pid_text = path.name.rsplit(_TMP_TAG, 1)[-1].split("-", 1)[0]
        try:
            os.kill(int(pid_text), 0)
        except (ProcessLookupError, OverflowError, ValueError):
            log.info("removing the leftover of an interrupted LM conversion: %s", path)
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def ensure_chat_template(tokenizer: Any, name: str, gguf: Path | None = None) -> None:
    """Make sure the tokenizer has a chat template: the GGUF's own if transformers missed it, else ChatML."""
    if getattr(tokenizer, "chat_template", None):
        return
    if gguf is not None:
        from gguf import GGUFReader

        field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
        if field is not None and field.data:
            tokenizer.chat_template = bytes(field.parts[field.data[0]]).decode("utf-8")
            return
    log.warning("dialogue model %s has no chat template; using ChatML", name)
    tokenizer.chat_template = CHATML_TEMPLATE
