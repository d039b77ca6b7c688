"""The embedded model's replies decoded by llama.cpp, in this process (``dialogue.decoder``; llama-cpp-python).

llama.cpp decodes the GGUF from its own 4-bit blocks with int8 dot products (AVX-512 VNNI, AMX where the CPU has
them): on this project's 2-core Xeons about 3-4x the tokens per second of transformers' float32 forward with our own
block kernel (benchmarks/README.md, "Dialogue decoders"). Everything around the decoding stays the embedded
model's own, from :class:`~voiceos.dialogue.lm.DialogueLM` loaded beside it (the torch model, float32):

- the prompt: its tokenizer and chat template, the persona, the memory and the history, fitted the same way, so
  llama.cpp is fed exactly the token ids the torch model would be;
- the fine-tuned adapter: its peft checkpoint converted to a GGUF LoRA adapter (:mod:`~voiceos.dialogue.lora_gguf`,
  cached) that llama.cpp applies; ``use_adapter=False`` replies with the base model;
- the next token: :func:`~voiceos.dialogue.sampling.pick_token` on llama.cpp's logits (repetition penalty, greedy or
  sampling, as with torch), one ``eval`` per token, so closing the reply's generator stops it at the next token;
- the emotion: the torch model's pass through the layers the head reads
  (:meth:`~voiceos.dialogue.lm.DialogueLM.read_emotion`), before llama.cpp's prefill, because its note joins the
  prompt; it reads only what the conversation added since the last turn.

Across turns llama.cpp's KV cache is reused for the longest common prefix of the new prompt and what it holds (the
persona, then the conversation so far), as the torch decoder's prompt cache does.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import os
import subprocess
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceos import models
from voiceos.config import DialogueOptions
from voiceos.cpu import cpu_flags
from voiceos.dialogue.detokenizer import IncrementalDetokenizer
from voiceos.dialogue.lm import DialogueLM
from voiceos.dialogue.lora_gguf import gguf_lora
from voiceos.dialogue.prompt_cache import common_prefix
from voiceos.dialogue.sampling import seen_tokens, stream_tokens
from voiceos.dialogue.types import EmotionHook, GenerationStats, Messages
from voiceos.emotion.head import EmotionHead
from voiceos.errors import ModelLoadError

log = logging.getLogger(__name__)

DECODER = "llama.cpp"
CONTEXT_SLACK = 256  # tokens of context beyond max_prompt_tokens + max_new_tokens


def llama_cpp_version() -> str | None:
    """llama-cpp-python's version when it can be imported, else None."""
    try:
        import llama_cpp
    except (ImportError, OSError):  # not installed, or its library does not load here
        return None
    return str(llama_cpp.__version__)


def gguf_path(options: DialogueOptions) -> Path | None:
    """The GGUF file ``options`` name, when the model is one on this machine: the embedded model, or ``gguf_file``
    in a local directory (a hub id's GGUF lives in transformers' cache: the torch decoder loads it)."""
    if options.model == models.EMBEDDED_LM:
        return models.embedded_lm_gguf()
    directory = Path(options.model).expanduser()
    if options.gguf_file and directory.is_dir():
        return directory / options.gguf_file
    return None


class LlamaCppLM:
    """A dialogue backend (:class:`~voiceos.dialogue.backend.DialogueBackend`) decoding with llama.cpp."""

    decoder = DECODER

    def __init__(self, llama: Any, local: DialogueLM, options: DialogueOptions, lora: Any = None) -> None:
        self.llama = llama
        self.local = local  # the torch model: tokenizer, chat template, prompt fitting, emotion head
        self.options = options
        self.lora = lora  # llama.cpp's handle of the converted adapter, or None
        self.last_stats = GenerationStats()
        self.load_s = 0.0
        self._adapter_on: bool | None = None
        self._system_tokens = (0, "")  # the last prompt's system turn: its length in tokens, and its text

    @classmethod
    def load(cls, options: DialogueOptions, plan: models.DevicePlan, *, threads: int = 0) -> LlamaCppLM:
        """The torch model (which never decodes here: no block kernel or decode step), then llama.cpp beside it."""
        start = time.perf_counter()
        torch_only = dataclasses.replace(options, block_kernel=False, lean_decode=False)
        local = DialogueLM.load(torch_only, plan, threads=threads)
        lm = cls.beside(local, options, threads=threads)
        lm.load_s = time.perf_counter() - start
        return lm

    @classmethod
    def beside(cls, local: DialogueLM, options: DialogueOptions, *, threads: int = 0) -> LlamaCppLM:
        """llama.cpp on ``options``' GGUF, with ``local`` (the same model, loaded by torch) for the rest."""
        start = time.perf_counter()
        gguf = gguf_path(options)
        if gguf is None or not gguf.is_file():
            raise ModelLoadError(f"dialogue.decoder llama_cpp needs a GGUF model; {options.model} is not one here")
        from llama_cpp import Llama

        cache_root = models.cache_dir(options.cache_dir) / "lm"
        batch = batch_size(gguf, cache_root)
        threads = threads or os.cpu_count() or 1
        n_ctx = min(local.model.config.max_position_embeddings, options.max_prompt_tokens + options.max_new_tokens)
        try:
            llama = Llama(
                model_path=str(gguf),
                n_ctx=n_ctx + CONTEXT_SLACK,
                n_batch=batch,
                n_ubatch=batch,
                n_threads=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as err:  # llama-cpp-python's errors for a file it cannot load
            raise ModelLoadError(f"llama.cpp cannot load {gguf}: {err}") from None
        lora = None
        if local.adapter is not None:
            lora = _load_lora(llama, gguf_lora(Path(local.adapter), gguf, cache_root))
        lm = cls(llama, local, options, lora)
        lm.load_s = time.perf_counter() - start
        log.info(
            "dialogue LM %s decoded by llama.cpp %s (%d threads, batches of %d%s) in %.1f s",
            local.name,
            llama_cpp_version(),
            threads,
            batch,
            f", adapter {local.adapter}" if lora is not None else "",
            lm.load_s,
        )
        return lm

    # -- the backend protocol ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.local.name

    @property
    def adapter(self) -> str | None:
        return self.local.adapter if self.lora is not None else None

    @property
    def has_emotion_head(self) -> bool:
        return self.local.has_emotion_head

    def attach_emotion_head(self, head: EmotionHead, labels: Sequence[str]) -> None:
        self.local.attach_emotion_head(head, tuple(labels))

    def reset(self) -> None:
        """A new conversation: llama.cpp's KV cache keeps the system turn only (as the torch decoder keeps the
        persona's cache), and the emotion pass forgets its own."""
        self.llama.n_tokens = min(self.llama.n_tokens, self._system_tokens[0])
        self.local.reset()

    def with_options(self, **changes: Any) -> LlamaCppLM:
        """This model with other decoding options; it shares llama.cpp's context (and so its KV cache)."""
        other = LlamaCppLM(self.llama, self.local, dataclasses.replace(self.options, **changes), self.lora)
        other._adapter_on, other._system_tokens = self._adapter_on, self._system_tokens
        return other

    def reply(self, history: Messages, user_text: str, **kwargs: Any) -> str:
        return "".join(self.stream_reply(history, user_text, **kwargs))

    def stream_reply(
        self,
        history: Messages,
        user_text: str,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int | None = None,
        extra_system: str | None = None,
        on_emotion: EmotionHook | None = None,
        use_adapter: bool = True,
    ) -> Generator[str, None, None]:
        """As :meth:`DialogueLM.stream_reply <voiceos.dialogue.lm.DialogueLM.stream_reply>`."""
        self._switch_adapter(use_adapter)
        start = time.perf_counter()
        local, llama = self.local, self.llama
        messages = local.messages_for(history, user_text, system_prompt=system_prompt, extra_system=extra_system)
        limit = max_new_tokens or self.options.max_new_tokens
        ids = local.fit_prompt(messages, limit)[0].tolist()
        stats = self.last_stats = GenerationStats(prompt_tokens=len(ids))
        detok = IncrementalDetokenizer(local.tokenizer)
        stop_reason = "error"
        try:
            if on_emotion is not None and local.has_emotion_head:
                note = on_emotion(local.emotion_of(messages))
                noted = local.prompt_with_note(messages, note) if note else None
                if noted is not None:
                    ids = noted
                stats.prompt_tokens = len(ids)
            self._remember_system_turn(messages)
            limit = min(limit, llama.n_ctx() - len(ids))
            reused = min(common_prefix(llama.input_ids[: llama.n_tokens].tolist(), ids), len(ids) - 1)
            stats.reused_tokens = reused
            llama.n_tokens = reused  # eval() drops the KV cache past it, then appends the rest
            llama.eval(ids[reused:])
            stats.prefill_s = time.perf_counter() - start
            stop_reason = yield from stream_tokens(
                self._logits(),
                self._feed,
                limit=limit,
                seen=seen_tokens(ids, llama.n_vocab()),
                options=self.options,
                stop_ids=local.stop_ids,
                detok=detok,
                stats=stats,
                started=start,
            )
        except GeneratorExit:
            stop_reason = "cancelled"
            raise
        finally:
            stats.stop_reason = stop_reason
            stats.total_s = time.perf_counter() - start
            stats.token_ids = tuple(detok.ids)
            log.debug("reply (llama.cpp): %s", stats)

    # -- inside ------------------------------------------------------------------------------------------------------
    def _feed(self, token: int) -> torch.Tensor:
        self.llama.eval([token])
        return self._logits()

    def _logits(self) -> torch.Tensor:
        """The last evaluated token's logits (llama.cpp's buffer, valid until the next eval)."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
        return torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),)))

    def _switch_adapter(self, on: bool) -> None:
        """The adapter on or off for this reply; the KV cache, made the other way (layers 14-29 differ), goes."""
        if self.lora is None or on == self._adapter_on:
            return
        import llama_cpp

        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.lora)
        scales = (ctypes.c_float * 1)(1.0)
        if llama_cpp.llama_set_adapters_lora(self.llama.ctx, adapters, 1 if on else 0, scales) != 0:
            raise ModelLoadError("llama.cpp refused the dialogue adapter")
        self._adapter_on = on
        self.llama.n_tokens = 0

    def _remember_system_turn(self, messages: Messages) -> None:
        """The system turn's length in tokens, which :meth:`reset` keeps (measured once per system prompt)."""
        if not messages or messages[0]["role"] != "system":
            self._system_tokens = (0, "")
        elif messages[0]["content"] != self._system_tokens[1]:
            tokenizer = self.local.tokenizer
            text = tokenizer.apply_chat_template([messages[0]], tokenize=False)
            self._system_tokens = (len(tokenizer(text, add_special_tokens=False)["input_ids"]), messages[0]["content"])


def _load_lora(llama: Any, path: Path) -> Any:
    import llama_cpp

    handle = llama_cpp.llama_adapter_lora_init(llama.model, str(path).encode())
    if not handle:
        raise ModelLoadError(f"llama.cpp cannot load the dialogue adapter {path}; set dialogue.adapter: null")
    return handle


def batch_size(gguf: Path, cache_root: Path) -> int:
    """How many prompt tokens llama.cpp takes per batch here: 512, unless a batch crashes llama.cpp on this machine
    (llama-cpp-python 0.3.36 segfaulted on multi-token batches of the Q4_1 GGUF in its AMX path on Xeons with AMX),
    then 1. Found once per machine, llama.cpp version and model by a child process, and remembered."""
    import hashlib

    flags = " ".join(sorted(cpu_flags()))
    key = hashlib.sha256(f"{flags}:{llama_cpp_version()}:{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    verdict = cache_root / f"llama-cpp-batch-{key}.txt"
    if verdict.is_file():
        return int(verdict.read_text().strip() or 1)
    command = [sys.executable, "-m", "voiceos.dialogue.llama_cpp_check", str(gguf)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    size = 512 if done.returncode == 0 else 1
    if size == 1:
        log.warning(
            "llama.cpp crashed on a batch of prompt tokens here (exit %s): it prefills a token at a time",
            done.returncode,
        )
    cache_root.mkdir(parents=True, exist_ok=True)
    verdict.write_text(f"{size}\n")
    return size
