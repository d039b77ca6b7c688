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

import contextlib
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from voiceos.errors import VoiceosError
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


def _last_reply_candidates() -> list[Path]:
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


@dataclass
class ForgetReport:
    erased: list[str] = field(default_factory=list)  # one line per thing erased
    errors: list[str] = field(default_factory=list)


def forget(socket_path: str | os.PathLike[str] | None = None) -> ForgetReport:
    """Erase what voiceos stores about the user; running it again finds nothing more to erase."""
    from voiceos.daemon.client import ControlClient, DaemonUnavailable

    report = ForgetReport()
    # The daemon first: reset interrupts a turn in flight, which could otherwise save itself after the files go.
    try:
        with ControlClient(socket_path, timeout=60) as client:
            result = client.request("reset")
        cleared, facts = int(result.get("cleared_messages") or 0), int(result.get("cleared_facts") or 0)
        if cleared or facts:
            what = [f"{cleared} messages"] if cleared else []
            what += [f"{facts} fact{'s' if facts != 1 else ''} about you"] if facts else []
            report.erased.append(f"erased the running daemon's conversation memory ({', '.join(what)})")
    except DaemonUnavailable:
        pass
    except VoiceosError as err:
        report.errors.append(f"could not clear the running daemon's memory: {err}")

    from voiceos.memory.store import memory_path  # (it imports this module)

    remembered = memory_path()
    if _remove(remembered, report):
        report.erased.append(f"erased the facts kept across restarts: {remembered}")
    from voiceos.alarms.reminders import reminders_path

    reminders = reminders_path()
    if _remove(reminders, report):
        report.erased.append(f"erased the reminders: {reminders}")
    transcripts = transcripts_path()
    if _remove(transcripts, report):
        report.erased.append(f"erased saved transcripts: {transcripts}")
    with contextlib.suppress(OSError):
        transcripts.parent.rmdir()  # only when empty: anything else in it is not ours to judge
    for path in _last_reply_candidates():
        if _remove(path, report):
            report.erased.append(f"erased the last reply's audio: {path}")
    return report


def forget_command(socket_path: str | None = None) -> int:
    """``voiceos forget``: one line per thing erased; VoiceosError (one line) when something could not be."""
    report = forget(socket_path)
    for line in report.erased:
        print(line)
    if not report.erased and not report.errors:
        print("nothing to erase: no conversation memory, saved transcripts or reply audio")
    if report.errors:
        raise VoiceosError("; ".join(report.errors))
    return 0


def _remove(path: Path, report: ForgetReport) -> bool:
    """Delete a file of this user's; False when there is none."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        report.errors.append(f"cannot check {path}: {err.strerror or err}")
        return False
    if st.st_uid != os.getuid():  # e.g. another user's reply in a shared /tmp/voiceos: not ours
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        report.errors.append(f"cannot delete {path}: {err.strerror or err}")
        return False
    return True
