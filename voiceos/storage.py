"""Where voiceos keeps what it stores about the user, and how: ``$XDG_DATA_HOME/voiceos`` (a 0700 directory),
files 0600, replaced atomically. Memory, reminders, transcripts and ``voiceos forget`` all use these paths."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any


def data_dir() -> Path:
    """``$XDG_DATA_HOME/voiceos``; ``~/.local/share/voiceos`` when it is unset or not absolute (as XDG says)."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "voiceos"


def private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 (or make an existing one of ours 0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def write_private_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically with ``data`` as JSON (0600, in a 0700 directory)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(data, file, ensure_ascii=False, indent=1)
    os.replace(tmp, path)
