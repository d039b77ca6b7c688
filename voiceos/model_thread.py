"""The one way blocking model work leaves the event loop: a single worker thread per owner, so that jobs run one at a
time and in order (the models are not safe to call from two threads at once), and the loop never waits on them. The
daemon's models, Wyoming's service and the end-of-turn model each have one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ModelThread(concurrent.futures.ThreadPoolExecutor):
    """One worker thread named ``voiceos-<name>``; also an executor for ``loop.run_in_executor`` and ``submit``."""

    def __init__(self, name: str) -> None:
        super().__init__(1, thread_name_prefix=f"voiceos-{name}")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on this thread, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Drop the jobs not started; the one running finishes on its own (a model call cannot be interrupted)."""
        self.shutdown(wait=False, cancel_futures=True)
