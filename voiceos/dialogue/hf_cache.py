"""Passing a KV cache to a transformers model under the name its version expects.

transformers 5.x renamed the forward argument ``past_key_values`` to ``cache`` (and the output field with it): the
old name still works there but prints a FutureWarning and a deprecation line on every process's first turn, and
goes away in 5.40. Older versions (down to 4.56, the floor in pyproject.toml) only know ``past_key_values``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def _cache_argument(forward_owner: Any) -> str:  # a model class (hashable), whose forward transformers defines
    parameters = inspect.signature(forward_owner.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for ``model(...)``: ``cache`` where the model's forward takes it, else ``past_key_values``."""
    model_class: Any = type(model)  # (classes are hashable; typeshed's Hashable does not say so of type[Any])
    return {_cache_argument(model_class): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward pass returned (``output.cache`` on transformers 5.x, ``past_key_values`` before)."""
    cache = output.get("cache") if hasattr(output, "get") else None
    return cache if cache is not None else output.past_key_values
