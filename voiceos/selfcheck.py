"""Does this environment load? Import every heavy library the pipeline loads, and compare it with the lock.

``python -m voiceos.selfcheck`` runs after every install (the Makefile's last install step) and ``voiceos doctor``
reports the same check. Why: a wrongly paired release (torchaudio 2.11.1 beside torch 2.11.0 once) installs without a
complaint and fails only later, deep inside transformers, as "internal error: OSError: Could not load this library".
Here it fails at once, in one line that names the pair and says what to run.

The imports run in a child interpreter, so a native library that aborts or segfaults on import fails its own line
instead of taking the check (or ``voiceos doctor``) with it.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REINSTALL_HINT = "reinstall from the lock: rm -rf .venv && make install"
LOCK_PATH = Path(__file__).resolve().parents[1] / "requirements.lock"  # in a source checkout (editable install)
IMPORT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Library:
    """One import the pipeline makes, and the distributions that must fit together for it to load."""

    module: str
    packages: tuple[str, ...]  # the first is the library itself, the rest what it is bound to
    role: str
    statement: str = ""  # what to run instead of a plain `import module` (the path the pipeline takes)
    hint: str = REINSTALL_HINT

    @property
    def code(self) -> str:
        return self.statement or f"import {self.module}"


LIBRARIES: tuple[Library, ...] = (
    # torchcodec (the coqui extra) is not here: coqui-tts only checks that it is installed, and voiceos never loads it
    # (it would need FFmpeg and CUDA's NPP libraries).
    Library("torch", ("torch",), "the dialogue LM and the emotion head"),
    Library("torchaudio", ("torchaudio", "torch"), "transformers imports it while it loads the LM"),
    Library(
        "transformers",
        ("transformers", "torch", "torchaudio"),
        "the dialogue LM (its GGUF loader and the Llama model class)",
        statement=(
            "import transformers; transformers.AutoModelForCausalLM; transformers.LlamaForCausalLM; "
            "import transformers.modeling_gguf_pytorch_utils"
        ),
    ),
    Library("ctranslate2", ("ctranslate2",), "Whisper's engine"),
    Library("faster_whisper", ("faster-whisper", "ctranslate2"), "speech recognition"),
    Library("onnxruntime", ("onnxruntime",), "the Piper voice"),
    Library("piper", ("piper-tts", "onnxruntime"), "speech synthesis", statement="from piper import PiperVoice"),
    Library(
        "sounddevice",
        ("sounddevice",),
        "the microphone and speaker",
        hint="install the system's PortAudio: apt-get install libportaudio2 (make install does it as root)",
    ),
)


@dataclass(frozen=True)
class Failure:
    library: Library
    error: str  # the error's last line, as the child interpreter printed it

    def message(self) -> str:
        versions = [_installed(name) for name in self.library.packages]
        head, *bound = versions
        pair = f"{head} does not load with {', '.join(bound)}" if bound else f"{head} does not load"
        return f"{pair} ({self.error}); needed for {self.library.role}; {self.library.hint}"


def _installed(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} (not installed)"


# The child imports each library in turn and reports it on stdout: "ok NAME" or "fail NAME\tERROR". A library that
# kills the interpreter is the one it had started without reporting; the rest are checked in a new child.
_CHILD = """
import json, sys, traceback
for name, code in json.loads(sys.argv[1]):
    try:
        exec(code, {})
    except BaseException as err:
        last = (str(err).strip().splitlines() or [""])[-1]
        print("fail", name + "\\t" + type(err).__name__ + (": " + last if last else ""), flush=True)
    else:
        print("ok", name, flush=True)
"""


def check_libraries(libraries: tuple[Library, ...] = LIBRARIES, python: str = sys.executable) -> list[Failure]:
    """Every library that does not load, in the order the pipeline loads them."""
    pending = list(libraries)
    failures: list[Failure] = []
    while pending:
        payload = json.dumps([(lib.module, lib.code) for lib in pending])
        try:
            proc = subprocess.run(
                [python, "-c", _CHILD, payload], capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, check=False
            )
            stdout, died = proc.stdout, proc.returncode != 0
            reason = f"the interpreter died (exit status {proc.returncode})"
        except subprocess.TimeoutExpired as err:
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            died, reason = True, f"the import did not finish in {IMPORT_TIMEOUT_S:.0f} s"
        reported = 0
        for line in stdout.splitlines():
            verdict, _, rest = line.partition(" ")
            if verdict not in ("ok", "fail") or reported >= len(pending):
                continue
            if verdict == "fail":
                failures.append(Failure(pending[reported], rest.partition("\t")[2]))
            reported += 1
        if not died or reported >= len(pending):
            break
        failures.append(Failure(pending[reported], reason))  # the one it was importing when it died
        pending = pending[reported + 1 :]
    return failures


_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked_versions(lock: Path = LOCK_PATH) -> dict[str, str]:
    """``{name: version}`` from a requirements.lock, for the lines whose environment marker holds here."""
    from packaging.markers import Marker

    versions = {}
    for line in lock.read_text().splitlines():
        match = _LOCK_LINE.match(line.strip())
        if not match:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        versions[_normalize(name)] = version
    return versions


def lock_differences(lock: Path = LOCK_PATH) -> list[str]:
    """``["torchaudio 2.11.1 installed, 2.11.0 locked", ...]``: where this environment is not what the lock says."""
    differences = []
    for name, version in sorted(locked_versions(lock).items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            differences.append(f"{name} missing, {version} locked")
            continue
        if installed != version:
            differences.append(f"{name} {installed} installed, {version} locked")
    return differences


def describe_differences(differences: list[str], shown: int = 5) -> str:
    more = f"; and {len(differences) - shown} more" if len(differences) > shown else ""
    return "; ".join(differences[:shown]) + more


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    failures = check_libraries()
    for failure in failures:
        print(f"voiceos: install check failed: {failure.message()}", file=sys.stderr)
    differences = lock_differences() if LOCK_PATH.is_file() else []
    if differences:
        print(
            "voiceos: install check failed: this environment differs from requirements.lock: "
            f"{describe_differences(differences)}; "
            f"{REINSTALL_HINT}",
            file=sys.stderr,
        )
    if failures or differences:
        return 1
    print("voiceos: install check passed: torch, transformers, Whisper, Piper and sounddevice load", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
