"""Broken servers for the tests of ``dialogue.backend: openai`` (one that answers garbage, one that never answers),
to check what the user hears when the server fails; the real one is :class:`voiceos.lm_server.LlamaServer`."""

from __future__ import annotations

import socket
import threading


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
