"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) on a loopback port, serving a GGUF:
what ``voiceos bench`` compares the in-process LM against through ``dialogue.backend: openai``, and what the tests of
that backend run. llama-cpp-python is not a dependency of voiceos (it builds llama.cpp from source); ``make test``
installs it (packaging/test-server.in)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaServer:
    """The server on a free loopback port; ``base_url`` is its OpenAI API root, ``model`` the id it lists."""

    def __init__(self, gguf: Path, log_path: Path, *, threads: int = 2, timeout_s: float = 120.0) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = gguf.stem
        self.log_path = log_path
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", str(threads)]
        # --n_batch 1: llama.cpp (0.3.36) segfaults on multi-token batches of this Q4_1 GGUF in its AMX path on CPUs
        # that have AMX (this Xeon: AMX_INT8 = 1); one token per batch avoids it, prefill a token at a time
        command += ["--n_batch", "1"]
        self._log = open(log_path, "wb")  # noqa: SIM115 (open for the server's life)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_up(timeout_s)

    def _wait_until_up(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"llama_cpp.server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not come up in {timeout_s} s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """Gone at once, as a crash would leave it (connections reset mid-reply)."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def first_token_through_server(config, *, tokens: int = 64, runs: int = 3) -> dict | None:
    """The reply's first token and decoding rate through ``dialogue.backend: openai`` (medians of ``runs``): the
    configured server when the config names one, else llama-cpp-python's serving the embedded GGUF (None when it is
    not installed). ``voiceos bench`` puts it beside the in-process LM's figures."""
    import dataclasses
    import statistics
    import tempfile

    from voiceos import models
    from voiceos.bench_lm import PROMPT
    from voiceos.dialogue.openai_chat import OpenAIChat

    plan = models.plan_for(config)
    with tempfile.TemporaryDirectory(prefix="voiceos-lm-server-") as tmp:
        server = None
        options = config.dialogue
        if options.backend != "openai":
            if not available():
                return None
            server = LlamaServer(
                models.embedded_lm_gguf(), Path(tmp) / "server.log", threads=config.runtime.threads or 2
            )
            options = dataclasses.replace(
                options, backend="openai", base_url=server.base_url, server_model=server.model
            )
        try:
            chat = OpenAIChat.load(dataclasses.replace(options, temperature=0.0), plan, emotion=False)
            first_ms, rates = [], []
            for _ in range(runs):
                "".join(chat.stream_reply([], PROMPT, max_new_tokens=tokens))
                stats = chat.last_stats
                first_ms.append(stats.ttft_s * 1000)
                decode_s = stats.total_s - stats.ttft_s
                rates.append((stats.tokens - 1) / decode_s if stats.tokens > 1 and decode_s > 0 else 0.0)
        finally:
            if server is not None:
                server.stop()
    return {
        "server": "llama_cpp.server (embedded GGUF)" if server is not None else options.base_url,
        "model": chat.name,
        "first_token_ms": round(statistics.median(first_ms), 1),
        "tokens_per_s": round(statistics.median(rates), 1),
    }
