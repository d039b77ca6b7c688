"""Servers for the tests of ``dialogue.backend: openai``: a real one (llama-cpp-python's OpenAI-compatible server
serving the embedded SmolLM2 GGUF on 127.0.0.1) and two broken ones (one that answers garbage, one that never
answers), to check what the user hears when the server fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port; ``base_url`` is its OpenAI API root."""

    def __init__(self, gguf: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = gguf.stem  # the model id it lists: the alias below
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2"]
        self._log = open(log_path, "wb")  # noqa: SIM115 (open for the server's life)
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_up(log_path)

    def _wait_until_up(self, log_path: Path, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not come up in {timeout_s} s: {log_path.read_text()[-2000:]}")

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


class BrokenServer:
    """Accepts HTTP connections on loopback; ``reply`` (bytes) is sent back to each request, or nothing at all when
    it is None (a server that hangs)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.requests: list[bytes] = []
        self._open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._open.append(conn)
            self.requests.append(conn.recv(65536))
            if self.reply is not None:
                conn.sendall(self.reply)
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


GARBAGE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: this is not json\n\n"
