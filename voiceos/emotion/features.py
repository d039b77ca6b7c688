"""Hidden-state features of the user's turn, from the same chat prompt the dialogue model prefills.

For one example the prompt is ``lm.messages_for(history, text)`` through the chat template up to the end of the user's
turn (system prompt, the preceding turns, the user's text and its end-of-turn marker): exactly the first part of the
prefill that starts a reply (see :class:`voiceos.dialogue.model.DialogueModel`). From the hidden states of one layer
two vectors are pooled and concatenated:

- ``mean``: the mean over the tokens of the user's text (its character span in the templated prompt);
- ``last``: the state of the turn's last token (after the end-of-turn marker), which has attended to the whole turn.

``layer`` indexes transformers' ``hidden_states`` tuple (0 = embeddings, ``num_hidden_layers`` = the final, normed
output). Middle layers carry more of what the user feels than the last one, which is shaped for the next token.

A head with a branch (:mod:`voiceos.emotion.branch`) reads the layer's states of every token instead, and pools
after its own layers: :meth:`FeatureExtractor.token_states` gives them, :func:`cached_token_states` caches them.

The frozen LM runs once per example: features are cached as ``.npy`` under ``<cache_dir>/emotion-features/``, keyed
by the model name, the system prompt, the layer, a hash of the examples and the feature version. Examples are batched
with right padding (causal attention: the real tokens never see the padding, and their positions are unchanged), the
system prompt's keys and values, identical for every example, are computed once and shared by the batch, and the
forward pass stops at the layer the features come from.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voiceos.emotion.branch import pool_states
from voiceos.emotion.data import Example

log = logging.getLogger(__name__)

FEATURE_VERSION = 2
POOLINGS = ("mean", "last")  # the cached feature is their concatenation, in this order


def history_from_context(context: Sequence[str], roles: Sequence[str] = ()) -> list[dict[str, str]]:
    """Preceding utterances as chat turns: with ``roles`` (one per utterance), those; else alternating so that the
    one just before the user's is the assistant's."""
    n = len(context)
    if roles:
        return [{"role": role, "content": text} for role, text in zip(roles, context, strict=True)]
    return [{"role": "assistant" if (n - i) % 2 == 1 else "user", "content": text} for i, text in enumerate(context)]


def prompt_and_span(
    lm: Any, text: str, context: Sequence[str] = (), roles: Sequence[str] = ()
) -> tuple[list[int], tuple[int, int]]:
    """The user turn's prompt token ids and the token span ``[start, end)`` of the user's text in it."""
    messages = lm.messages_for(history_from_context(context, roles), text)
    return user_turn_prompt(lm.tokenizer, messages)


def example_item(ex: Example) -> tuple[Any, ...]:
    """What the extractor reads of an example: ``(text, context)``, plus the context's roles where it has them."""
    return (ex.text, ex.context, ex.context_roles) if ex.context_roles else (ex.text, ex.context)


def user_turn_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], tuple[int, int]]:
    """Token ids of ``messages`` through the chat template up to the end of the last (user) message, and its span."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    user_text = messages[-1]["content"]
    start_char = prompt.rindex(user_text) if user_text else len(prompt)
    end_char = start_char + len(user_text)
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b > start_char and a < end_char]
    if not inside:  # an empty user text: pool the token before the end-of-turn marker
        inside = [max(0, len(ids) - 3)]
    return list(ids), (inside[0], inside[-1] + 1)


def resolve_layer(model: Any, layer: int) -> int:
    """A ``hidden_states`` index, negative ones counted from the end (-1 = the final, normed output)."""
    n = int(model.config.num_hidden_layers)
    resolved = layer + n + 1 if layer < 0 else layer
    if not 0 <= resolved <= n:
        raise ValueError(f"layer {layer} is outside the model's 0..{n} hidden states")
    return resolved


class _Stop(Exception):
    """Raised by a forward hook to end the pass once the wanted layer's output exists."""


class FeatureExtractor:
    """Batched, prefix-shared forward passes of the frozen dialogue LM, up to one layer."""

    def __init__(self, lm: Any, layer: int = -1) -> None:
        self.lm = lm
        self.model = lm.model
        self.layer = resolve_layer(self.model, layer)

    def _prefix(self, ids_list: list[list[int]]) -> tuple[list[int], Any]:
        """The system turn's tokens and KV cache (the LM's own persona cache), when every prompt starts with them."""
        system = self.lm.options.system_prompt
        if not system:
            return [], None
        prefix, cache = self.lm.persona_prefix(system)
        if all(ids[: len(prefix)] == prefix and len(ids) > len(prefix) for ids in ids_list):
            return prefix, cache
        return [], None

    def _layer_states(self, **kwargs: Any) -> torch.Tensor:
        """``hidden_states[self.layer]`` of one forward pass, stopping after the layer that produces it."""
        layers = self.model.model.layers
        if self.layer >= len(layers):  # the final, normed output: the whole pass
            with torch.inference_mode():
                return self.model.model(**kwargs).last_hidden_state
        captured: list[torch.Tensor] = []

        def hook(_module: Any, _args: Any, output: Any) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)
            raise _Stop

        if self.layer == 0:
            with torch.inference_mode():
                return self.model.model.embed_tokens(kwargs["input_ids"])
        handle = layers[self.layer - 1].register_forward_hook(hook)
        try:
            with torch.inference_mode():
                self.model.model(**kwargs)
        except _Stop:
            pass
        finally:
            handle.remove()
        return captured[0]

    def hidden_batch(self, ids_list: list[list[int]]) -> tuple[list[torch.Tensor], int]:
        """The layer's hidden states (len_i - p, dim) of each prompt past the shared prefix, and the prefix length p."""
        prefix, prefix_cache = self._prefix(ids_list)
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
        device = self.model.device
        kwargs: dict[str, Any] = {"input_ids": batch.to(device), "attention_mask": mask.to(device)}
        if p:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(ids_list))
            from voiceos.dialogue.hf_cache import cache_kwargs  # (voiceos.dialogue imports this module)

            kwargs.update(cache_kwargs(self.model, cache), use_cache=True)
        hidden = self._layer_states(**kwargs)
        return [hidden[row, : lengths[row]] for row in range(len(ids_list))], p

    def _each_example(
        self, items: Sequence[tuple[Any, ...]], batch_size: int, progress: str
    ) -> Iterator[tuple[int, torch.Tensor, tuple[int, int]]]:
        """``(index, states past the shared prefix, user text span in them)`` of every item (``(text, context)`` or
        ``(text, context, roles)``), run in batches of similar length (``progress``: a bar's label, or "" for none)."""
        prompts = [prompt_and_span(self.lm, *item) for item in items]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0]))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc=progress, unit="batch")
        for idx in batches:
            hiddens, p = self.hidden_batch([prompts[i][0] for i in idx])
            for i, hidden in zip(idx, hiddens, strict=True):
                start, end = prompts[i][1]
                yield i, hidden, (start - p, end - p)

    def token_states(
        self,
        items: Sequence[tuple[Any, ...]],
        *,
        batch_size: int = 32,
        progress: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> TokenStates:
        """The layer's states of every token of each ``(text, context)`` pair past the shared system prompt
        (``dtype``: float16 halves a cache of them)."""
        per_example: list[torch.Tensor] = [torch.empty(0)] * len(items)
        spans = torch.zeros((len(items), 2), dtype=torch.long)
        for i, hidden, span in self._each_example(items, batch_size, "token states" if progress else ""):
            per_example[i] = hidden.to(dtype).cpu()
            spans[i] = torch.tensor(span)
        lengths = torch.tensor([0] + [len(h) for h in per_example])
        return TokenStates(torch.cat(per_example), torch.cumsum(lengths, 0), spans)

    def features(self, items: Sequence[tuple[Any, ...]], *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """(n, 2 * hidden) float32 features of ``(text, context)`` pairs (sorted by length internally)."""
        out = np.zeros((len(items), 2 * int(self.model.config.hidden_size)), dtype=np.float32)
        for i, hidden, span in self._each_example(items, batch_size, "features" if progress else ""):
            pooled = pool_states(hidden.float()[None], torch.tensor([len(hidden)]), torch.tensor([span]), "mean+last")
            out[i] = pooled[0].cpu().numpy()
        return out


@dataclass(frozen=True)
class TokenStates:
    """The layer's hidden states of the tokens past the shared system prompt, for many examples, back to back:
    example ``i`` is ``states[offsets[i]:offsets[i + 1]]`` and its user text is ``spans[i]`` within that."""

    states: torch.Tensor  # (total tokens, hidden); float16 when cached
    offsets: torch.Tensor  # (n + 1,) int64
    spans: torch.Tensor  # (n, 2) int64, [start, end) relative to the example's first state

    def __len__(self) -> int:
        return len(self.spans)

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded float32 (b, t, hidden) states, their lengths and spans, for the examples ``idx``."""
        lengths = self.lengths()[list(idx)]
        out = torch.zeros(len(idx), int(lengths.max()), self.states.shape[1])
        for row, i in enumerate(idx):
            out[row, : lengths[row]] = self.states[self.offsets[i] : self.offsets[i + 1]].float()
        return out, lengths, self.spans[list(idx)]


def cache_path(
    cache_dir: Path, lm: Any, examples: Sequence[Example], *, tag: str = "", extractor_layer: int = -1
) -> Path:
    """``<cache_dir>/emotion-features/<tag>-<hash>.npy``; the hash covers model, system prompt, examples, version."""
    h = hashlib.sha256()
    key = [FEATURE_VERSION, POOLINGS, extractor_layer, lm.name, lm.options.system_prompt, str(lm.model.dtype)]
    h.update(json.dumps(key).encode())
    for ex in examples:  # roles only where given, so that caches made before roles existed stay valid
        h.update(
            json.dumps([ex.text, list(ex.context), *([list(ex.context_roles)] if ex.context_roles else [])]).encode()
        )
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
    path = cache_path(cache_dir, extractor.lm, examples, tag=tag, extractor_layer=extractor.layer)
    if path.is_file():
        feats = np.load(path)
        if feats.shape[0] == len(examples):
            log.info("features from %s", path)
            return feats
    feats = extractor.features([example_item(ex) for ex in examples], batch_size=batch_size, progress=progress)
    _save(path, feats)
    return feats


def _save(path: Path, array: np.ndarray) -> None:
    """Written under a temporary name, then renamed: an interrupted run never leaves a truncated cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)


def cached_token_states(
    extractor: FeatureExtractor,
    examples: Sequence[Example],
    cache_dir: Path,
    *,
    tag: str = "",
    batch_size: int = 32,
    progress: bool = True,
) -> TokenStates:
    """:meth:`FeatureExtractor.token_states` of ``examples``, read from the cache when present, else computed and
    saved (``<tag>-<hash>.tokens.npy``: float16 states; ``.index.npy``: length and user span of each)."""
    base = cache_path(cache_dir, extractor.lm, examples, tag=tag, extractor_layer=extractor.layer)
    states_path, index_path = base.with_suffix(".tokens.npy"), base.with_suffix(".index.npy")
    if states_path.is_file() and index_path.is_file():
        index = np.load(index_path)
        if len(index) == len(examples):
            log.info("token states from %s", states_path)
            states = torch.from_numpy(np.load(states_path))
            offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(index[:, 0])]))
            return TokenStates(states, offsets, torch.from_numpy(index[:, 1:].copy()))
    items = [example_item(ex) for ex in examples]
    result = extractor.token_states(items, batch_size=batch_size, progress=progress, dtype=torch.float16)
    index = np.concatenate([result.lengths().numpy()[:, None], result.spans.numpy()], axis=1)
    _save(states_path, result.states.numpy())
    _save(index_path, index)
    return result
