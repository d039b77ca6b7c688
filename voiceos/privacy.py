"""What voiceos keeps about the user, and how it is kept out of logs and erased.

- :func:`redact` is the one way a log line may carry what the user said or what the assistant answered: by default
  it shows only the length (``privacy.log_transcripts``).
- :class:`TranscriptLog` appends finished turns to ``$XDG_DATA_HOME/voiceos/transcripts.jsonl`` when
  ``privacy.save_transcripts`` is on (file 0600 in a 0700 directory).
- :func:`forget` (``voiceos forget``) clears the running daemon's memory and deletes the remembered facts
  (``privacy.remember``), the reminders, the saved transcripts and the last reply's audio. The model cache
  (``~/.cache/voiceos``) is not personal and is kept.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

from voiceos.storage import data_dir, private_dir

log = logging.getLogger(__name__)

TRANSCRIPTS_FILE = "transcripts.jsonl"
LAST_REPLY_FILE = "last-reply.wav"


def redact(text: str, show: bool = False) -> str:
    """``text`` when ``show`` (privacy.log_transcripts), else ``<redacted N chars>``: for log arguments only."""
    return text if show else f"<redacted {len(text)} chars>"


def transcripts_path() -> Path:
    return data_dir() / TRANSCRIPTS_FILE


def last_reply_path() -> Path:
    """Where ``voiceos say`` leaves the reply when there is no audio device to play it on."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return Path(runtime) / "voiceos" / LAST_REPLY_FILE


def last_reply_candidates() -> list[Path]:
    """Every place :func:`last_reply_path` points to with or without a runtime directory (sessions differ)."""
    paths = [last_reply_path(), Path(os.environ.get("TMPDIR") or "/tmp") / "voiceos" / LAST_REPLY_FILE]
    return list(dict.fromkeys(paths))


class TranscriptLog:
    """Appends one JSON line per finished turn; a write that fails is logged (once, without content), never raised."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else transcripts_path()
        self._warned = False

    def append(self, source: str, user: str, reply: str, user_emotion: str | None, interrupted: bool) -> None:
        record = {
            "time": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "source": source,
            "user": user,
            "reply": reply,
            "user_emotion": user_emotion,
            "interrupted": interrupted,
        }
        line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
        try:
            private_dir(self.path.parent)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o600)
            try:
                if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
                    os.fchmod(fd, 0o600)
                os.write(fd, line)  # one write with O_APPEND: a line is never interleaved with another
            finally:
                os.close(fd)
        except OSError as err:
            if not self._warned:
                self._warned = True
                log.warning("cannot save transcripts to %s: %s", self.path, err.strerror or err)
