"""The install's self-check (voiceos/selfcheck.py) and what `voiceos doctor` makes of it.

A broken torch/torchaudio pair is reproduced for real: a shadow ``torchaudio`` on PYTHONPATH whose import loads a
shared library (built here with gcc) that needs a symbol no library provides, the way torchaudio 2.11.1's
libtorchaudio.so needs ``torch_exception_get_what_without_backtrace`` from a torch 2.11.0 that lacks it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the lock installs tomli there)
    import tomli as tomllib

from voiceos.selfcheck import LIBRARIES, LOCK_PATH, Library, check_libraries, lock_differences, locked_versions

ROOT = Path(__file__).resolve().parents[1]
MISSING_SYMBOL = "torch_exception_get_what_without_backtrace"


def test_every_library_the_pipeline_loads_imports_in_this_environment() -> None:
    assert check_libraries() == []


def test_the_installed_torch_and_torchaudio_load_together() -> None:
    """What broke every install once: torchaudio's native library must load beside this torch, and run an op."""
    code = (
        "import torch, torchaudio, torchaudio.functional as F; "
        "y = F.resample(torch.ones(1, 1600), 16000, 8000); "
        "maps = open('/proc/self/maps').read(); "
        "print('x'.join(map(str, y.shape)), 'libtorchaudio' in maps)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.strip().splitlines()[-1:]
    assert proc.stdout.split() == ["1x800", "True"]  # its native library is mapped into the process


def test_torch_and_torchaudio_are_pinned_exactly_and_installed_at_the_pins() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(
        re.fullmatch(r"(torch|torchaudio)==([\d.]+)", d).groups() for d in dependencies if d.startswith("torch")
    )
    assert set(pins) == {"torch", "torchaudio"}, dependencies
    for name, version in pins.items():
        assert importlib.metadata.version(name).split("+")[0] == version
        assert locked_versions()[name] == version


def test_this_environment_is_what_requirements_lock_pins() -> None:
    assert LOCK_PATH.is_file()
    assert len(locked_versions()) > 100  # the whole tree, not a few top-level names
    assert lock_differences() == []


def test_lock_lines_whose_marker_does_not_hold_here_are_left_out(tmp_path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "# a comment\n"
        "numpy==1.0 ; python_full_version < '3.0' \\\n    --hash=sha256:00\n"
        "numpy==9.9 ; python_full_version >= '3.0' \\\n    --hash=sha256:11\n"
        "Foo_Bar.baz==2.1 \\\n    --hash=sha256:22\n"
        "    # via voiceos\n"
    )
    assert locked_versions(lock) == {"numpy": "9.9", "foo-bar-baz": "2.1"}
    assert "foo-bar-baz missing, 2.1 locked" in lock_differences(lock)


@pytest.fixture(scope="module")
def broken_torchaudio(tmp_path_factory) -> dict[str, str]:
    """An environment whose torchaudio does not load with its torch: a real dlopen failure on an undefined symbol."""
    root = tmp_path_factory.mktemp("broken_pair")
    source = root / "libtorchaudio.c"
    source.write_text(
        f"extern const char *{MISSING_SYMBOL}(void *);\nconst char *f(void *e) {{ return {MISSING_SYMBOL}(e); }}\n"
    )
    library = root / "libtorchaudio.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    package = root / "shadow" / "torchaudio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import ctypes\n"
        "try:\n"
        f"    ctypes.CDLL({str(library)!r}, mode=ctypes.RTLD_GLOBAL)\n"
        "except OSError as err:\n"
        "    raise OSError(f'Could not load this library: {err}') from err\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")]))
    return env


def test_a_torchaudio_that_does_not_load_with_torch_fails_the_install_check_in_one_line(broken_torchaudio) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "voiceos.selfcheck"],
        env=broken_torchaudio,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    first = next(line for line in lines if "torchaudio" in line.split("does not load")[0])
    torch_version = importlib.metadata.version("torch")
    assert first.startswith(f"voiceos: install check failed: torchaudio {importlib.metadata.version('torchaudio')} ")
    assert f"does not load with torch {torch_version}" in first
    assert MISSING_SYMBOL in first and "make install" in first


def test_doctor_reports_a_torchaudio_that_does_not_load_as_a_failed_line(broken_torchaudio, no_sound_env) -> None:
    env = {**no_sound_env, "PYTHONPATH": broken_torchaudio["PYTHONPATH"]}
    proc = subprocess.run(
        [sys.executable, "-m", "voiceos", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "internal error" not in proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert not report["ok"]
    assert not checks["libraries"]["ok"] and checks["libraries"]["required"]
    assert "torchaudio" in checks["libraries"]["detail"] and MISSING_SYMBOL in checks["libraries"]["detail"]
    assert checks["packages"]["ok"]  # the versions are all there; it is the pair that does not load


def test_a_library_that_kills_the_interpreter_fails_alone_and_the_rest_are_still_checked(tmp_path, monkeypatch):
    (tmp_path / "aborts_on_import.py").write_text("import os\nos.abort()\n")
    (tmp_path / "raises_on_import.py").write_text("raise ImportError('no such thing here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    libraries = (
        Library("json", ("pytest",), "a library that loads"),
        Library("aborts_on_import", ("pytest",), "a library that aborts"),
        Library("raises_on_import", ("pytest",), "a library that raises"),
        Library("wave", ("pytest",), "one more that loads"),
    )
    failures = check_libraries(libraries)
    assert [f.library.module for f in failures] == ["aborts_on_import", "raises_on_import"]
    assert "died" in failures[0].error
    assert failures[1].error == "ImportError: no such thing here"


def test_the_check_covers_the_heavy_libraries_the_issue_names() -> None:
    modules = {lib.module for lib in LIBRARIES}
    assert {"torch", "torchaudio", "transformers", "ctranslate2", "faster_whisper", "onnxruntime", "piper"} <= modules
    assert "sounddevice" in modules
