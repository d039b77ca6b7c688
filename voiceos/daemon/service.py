"""The systemd user unit for ``voiceos run``: render it for this Python, install it, optionally enable it.

The template is ``systemd/voiceos.service`` in the project (or ``voiceos/daemon/voiceos.service`` in a wheel); its
``@PYTHON@`` becomes the interpreter that has voiceos installed (the virtual environment's, unresolved, so that the
venv stays in effect).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from voiceos.config import Config
from voiceos.daemon.network_dropin import DROPIN_NAME, render_dropin
from voiceos.errors import VoiceosError

log = logging.getLogger(__name__)

UNIT_NAME = "voiceos.service"
PLACEHOLDER = "@PYTHON@"
ENABLE_TIMEOUT_S = 330  # enable --now waits for READY=1: the first start loads every model (TimeoutStartSec=300)

_PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATE_CANDIDATES = (
    _PACKAGE_DIR / UNIT_NAME,  # a wheel ships it next to this module
    _PACKAGE_DIR.parents[1] / "systemd" / UNIT_NAME,  # a source checkout / editable install
)


def template_path() -> Path:
    for candidate in TEMPLATE_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise VoiceosError(
        f"the unit template {UNIT_NAME} is missing (looked in {', '.join(map(str, TEMPLATE_CANDIDATES))})"
    )


def render_unit(python: str = sys.executable) -> str:
    """The unit text with ExecStart running ``python -m voiceos run``."""
    if not python or not os.path.isabs(python):
        raise VoiceosError(f"the unit needs an absolute path to Python, not {python!r}")
    return template_path().read_text().replace(PLACEHOLDER, quote_exec_arg(python))


def quote_exec_arg(arg: str) -> str:
    """One ExecStart= word: '%' and '$' are specifiers/variables to systemd, so double them; quote blanks."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if any(ch.isspace() or ch in "\"'\\;" for ch in escaped):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def user_unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user``, by default ``~/.config/systemd/user``."""
    config_home = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config_home) if config_home and os.path.isabs(config_home) else Path.home() / ".config"
    return base / "systemd" / "user"


def install_service(
    unit_dir: Path | None = None, *, enable: bool = False, python: str = sys.executable, config: Config | None = None
) -> Path:
    """Write the rendered unit to ``unit_dir`` (default: the user unit directory) and return its path; with
    ``config``, also the network drop-in it needs (voiceos.daemon.network_dropin), or remove a stale one.

    Only with ``enable`` is systemctl run (``daemon-reload``, then ``enable --now``); a failure is a VoiceosError
    with systemctl's own last line.
    """
    text = render_unit(python)
    directory = Path(unit_dir) if unit_dir is not None else user_unit_dir()
    path = directory / UNIT_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write(path, text)
        if config is not None:
            dropin, dropin_path = render_dropin(config), directory / f"{UNIT_NAME}.d" / DROPIN_NAME
            if dropin is not None:
                dropin_path.parent.mkdir(exist_ok=True)
                _write(dropin_path, dropin)
                log.info("wrote %s (network for dialogue.backend openai)", dropin_path)
            else:
                dropin_path.unlink(missing_ok=True)
    except OSError as err:
        raise VoiceosError(f"cannot write {err.filename or path}: {err.strerror or err}") from err
    log.info("wrote %s", path)
    if enable:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
    return path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def next_steps(path: Path, *, enabled: bool = False) -> str:
    """What the CLI prints after :func:`install_service`."""
    lines = [f"installed {path}"]
    if enabled:
        lines.append("voiceos is enabled and running; follow its log with:")
    else:
        lines += [
            "start it now and at every login with:",
            "  systemctl --user daemon-reload",
            "  systemctl --user enable --now voiceos",
            "then follow its log with:",
        ]
    lines.append("  journalctl --user -u voiceos -f")
    return "\n".join(lines)


def _systemctl(*args: str) -> None:
    command = ["systemctl", "--user", *args]
    shown = " ".join(command)
    if shutil.which("systemctl") is None:
        raise VoiceosError(f"cannot run {shown}: systemctl is not installed")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=ENABLE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise VoiceosError(f"{shown} did not finish within {ENABLE_TIMEOUT_S} s") from err
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()
        detail = output[0] if output else f"exit status {result.returncode}"
        raise VoiceosError(f"{shown} failed: {detail}")
