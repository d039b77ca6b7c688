"""Hidden-state features of the user's turn, from the same chat prompt the dialogue model prefills.

For one example the prompt is ``lm.messages_for(history, text)`` through the chat template (system prompt, the
preceding turns, the user's text, the assistant opener), exactly what :meth:`DialogueLM.stream_reply` prefills. From
the final layer's hidden states two vectors are pooled and concatenated:

- ``mean``: the mean over the tokens of the user's text (its character span in the templated prompt);
- ``last``: the state of the prompt's last token (the assistant opener), which has attended to the whole prompt.

The frozen LM runs once per example: features are cached as ``.npy`` under ``<cache_dir>/emotion-features/``, keyed
by the model name, the system prompt, a hash of the examples and the feature version. Examples are batched with right
padding (causal attention: the real tokens never see the padding, and their positions are unchanged), and the system
prompt's keys and values, identical for every example, are computed once and shared by the batch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceos.emotion.data import Example

log = logging.getLogger(__name__)

FEATURE_VERSION = 1
POOLINGS = ("mean", "last")  # the cached feature is their concatenation, in this order


def history_from_context(context: Sequence[str]) -> list[dict[str, str]]:
    """Preceding utterances as chat turns, alternating so that the one just before the user's is the assistant's."""
    n = len(context)
    return [{"role": "assistant" if (n - i) % 2 == 1 else "user", "content": text} for i, text in enumerate(context)]


def prompt_and_span(lm: Any, text: str, context: Sequence[str] = ()) -> tuple[list[int], tuple[int, int]]:
    """The dialogue prompt's token ids and the token span ``[start, end)`` of the user's text in it."""
    messages = lm.messages_for(history_from_context(context), text)
    return prompt_and_span_for_messages(lm, messages)


def prompt_and_span_for_messages(lm: Any, messages: list[dict[str, str]]) -> tuple[list[int], tuple[int, int]]:
    """Token ids of ``messages`` as :meth:`DialogueLM.build_prompt` makes them, and the last user message's span."""
    tok = lm.tokenizer
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    user_text = messages[-1]["content"]
    start_char = prompt.rindex(user_text) if user_text else len(prompt)
    end_char = start_char + len(user_text)
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b > start_char and a < end_char]
    if not inside:  # an empty user text: pool the token before the assistant opener
        inside = [max(0, len(ids) - 4)]
    return list(ids), (inside[0], inside[-1] + 1)


def pool(hidden: torch.Tensor, span: tuple[int, int], length: int) -> torch.Tensor:
    """``hidden`` (seq, dim) of one prompt of ``length`` real tokens -> the concatenated (2 * dim,) feature."""
    start, end = span
    return torch.cat([hidden[start:end].float().mean(dim=0), hidden[length - 1].float()])


class FeatureExtractor:
    """Batched, prefix-shared forward passes of the frozen dialogue LM."""

    def __init__(self, lm: Any) -> None:
        self.lm = lm
        self.model = lm.model
        self._prefix_ids: list[int] | None = None
        self._prefix_cache: Any = None
        self._prefix_for: str | None = None
        self._prefix_hidden_for: str | None = None
        self._prefix_hidden_value: torch.Tensor | None = None

    def _prefix(self, ids_list: list[list[int]]) -> list[int]:
        """The system turn's tokens, when every prompt starts with them (else nothing is shared)."""
        system = self.lm.options.system_prompt
        if self._prefix_for != system:
            tok = self.lm.tokenizer
            text = tok.apply_chat_template([{"role": "system", "content": system}], tokenize=False)
            self._prefix_ids = tok(text, add_special_tokens=False)["input_ids"] if system else []
            self._prefix_cache, self._prefix_for = None, system
            if self._prefix_ids:
                from transformers import DynamicCache

                cache = DynamicCache(config=self.model.config)
                ids = torch.tensor([self._prefix_ids], device=self.model.device)
                with torch.inference_mode():
                    self.model(input_ids=ids, past_key_values=cache, use_cache=True)
                self._prefix_cache = cache
        prefix = self._prefix_ids or []
        if prefix and all(ids[: len(prefix)] == prefix and len(ids) > len(prefix) for ids in ids_list):
            return prefix
        return []

    def hidden_batch(self, ids_list: list[list[int]]) -> list[torch.Tensor]:
        """Final-layer hidden states (len_i, dim) of each prompt, in one padded forward pass."""
        prefix = self._prefix(ids_list)
        p = len(prefix)
        lengths = [len(ids) - p for ids in ids_list]
        width = max(lengths)
        pad = self.lm.tokenizer.pad_token_id or 0
        batch = torch.full((len(ids_list), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_list), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for row, ids in enumerate(ids_list):
            batch[row, : lengths[row]] = torch.tensor(ids[p:])
            mask[row, p : p + lengths[row]] = 1
        kwargs: dict[str, Any] = {}
        if p:
            cache = copy.deepcopy(self._prefix_cache)
            cache.batch_repeat_interleave(len(ids_list))
            kwargs = {"past_key_values": cache, "use_cache": True}
        device = self.model.device
        with torch.inference_mode():
            out = self.model.model(input_ids=batch.to(device), attention_mask=mask.to(device), **kwargs)
        hidden = out.last_hidden_state
        if p:  # the prefix positions come from the shared cache: prepend them (identical for every row)
            prefix_hidden = self._prefix_hidden()
            return [torch.cat([prefix_hidden, hidden[row, : lengths[row]]]) for row in range(len(ids_list))]
        return [hidden[row, : lengths[row]] for row in range(len(ids_list))]

    def _prefix_hidden(self) -> torch.Tensor:
        if self._prefix_hidden_value is None or self._prefix_hidden_for != self._prefix_for:
            ids = torch.tensor([self._prefix_ids], device=self.model.device)
            with torch.inference_mode():
                self._prefix_hidden_value = self.model.model(input_ids=ids).last_hidden_state[0]
            self._prefix_hidden_for = self._prefix_for
        return self._prefix_hidden_value

    def features(
        self, items: Sequence[tuple[str, Sequence[str]]], *, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """(n, 2 * hidden) float32 features of ``(text, context)`` pairs (sorted by length internally)."""
        prompts = [prompt_and_span(self.lm, text, context) for text, context in items]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0]))
        dim = 2 * int(self.model.config.hidden_size)
        out = np.zeros((len(prompts), dim), dtype=np.float32)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="features", unit="batch")
        for idx in batches:
            hiddens = self.hidden_batch([prompts[i][0] for i in idx])
            for i, hidden in zip(idx, hiddens, strict=True):
                out[i] = pool(hidden, prompts[i][1], len(prompts[i][0])).cpu().numpy()
        return out


def cache_path(cache_dir: Path, lm: Any, examples: Sequence[Example], *, tag: str = "") -> Path:
    """``<cache_dir>/emotion-features/<tag>-<hash>.npy``; the hash covers model, system prompt, examples, version."""
    h = hashlib.sha256()
    h.update(json.dumps([FEATURE_VERSION, POOLINGS, lm.name, lm.options.system_prompt, str(lm.model.dtype)]).encode())
    for ex in examples:
        h.update(json.dumps([ex.text, list(ex.context)]).encode())
    return Path(cache_dir) / "emotion-features" / f"{tag or 'features'}-{h.hexdigest()[:16]}.npy"


def cached_features(
    extractor: FeatureExtractor,
    examples: Sequence[Example],
    cache_dir: Path,
    *,
    tag: str = "",
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Features of ``examples``, read from the cache when present, else computed and saved."""
    path = cache_path(cache_dir, extractor.lm, examples, tag=tag)
    if path.is_file():
        feats = np.load(path)
        if feats.shape[0] == len(examples):
            log.info("features from %s", path)
            return feats
    feats = extractor.features([(ex.text, ex.context) for ex in examples], batch_size=batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)
    return feats
