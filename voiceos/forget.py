"""``voiceos forget``: erase what voiceos stores about the user, the running daemon's memory first. It asks the
daemon (its control socket) and knows every stage's files, so it sits beside the CLI, not in :mod:`voiceos.privacy`,
which the stages use."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from voiceos.alarms.reminders import reminders_path
from voiceos.daemon.client import ControlClient, DaemonUnavailable
from voiceos.errors import VoiceosError
from voiceos.memory.store import memory_path
from voiceos.privacy import last_reply_candidates, transcripts_path


@dataclass
class ForgetReport:
    erased: list[str] = field(default_factory=list)  # one line per thing erased
    errors: list[str] = field(default_factory=list)


def forget(socket_path: str | os.PathLike[str] | None = None) -> ForgetReport:
    """Erase what voiceos stores about the user; running it again finds nothing more to erase."""
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

    remembered = memory_path()
    if _remove(remembered, report):
        report.erased.append(f"erased the facts kept across restarts: {remembered}")
    reminders = reminders_path()
    if _remove(reminders, report):
        report.erased.append(f"erased the reminders: {reminders}")
    transcripts = transcripts_path()
    if _remove(transcripts, report):
        report.erased.append(f"erased saved transcripts: {transcripts}")
    with contextlib.suppress(OSError):
        transcripts.parent.rmdir()  # only when empty: anything else in it is not ours to judge
    for path in last_reply_candidates():
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
