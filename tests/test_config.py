"""Config loading: defaults, overrides, and one-line errors that name the file and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from voiceos.config import Config, default_config_path, load_config
from voiceos.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_shipped_config_yaml_equals_the_built_in_defaults():
    loaded = load_config(REPO / "config.yaml")
    assert dataclasses.replace(loaded, source="<defaults>") == Config()


def test_partial_file_overrides_only_the_keys_it_names(tmp_path):
    config = load_config(write(tmp_path, "vad:\n  hangover_ms: 800\ndialogue:\n  temperature: 1\n"))
    assert config.vad.hangover_ms == 800
    assert config.dialogue.temperature == 1.0 and isinstance(config.dialogue.temperature, float)
    assert config.vad.aggressiveness == Config().vad.aggressiveness


def test_empty_file_gives_defaults(tmp_path):
    assert dataclasses.replace(load_config(write(tmp_path, "")), source="<defaults>") == Config()


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("vad:\n  hangovr_ms: 3\n", ["vad.hangovr_ms", "unknown key"]),
        ("bogus: 1\n", ["'bogus'", "unknown key"]),
        ("vad:\n  hangover_ms: soon\n", ["vad.hangover_ms", "an integer"]),
        ("vad:\n  aggressiveness: 7\n", ["vad.aggressiveness", "between 0 and 3"]),
        ("vad:\n  frame_ms: 25\n", ["'vad'", "frame_ms must be 10, 20 or 30"]),
        ("runtime:\n  device: tpu\n", ["runtime.device", "one of auto, cpu, cuda"]),
        ("dialogue:\n  max_new_tokens: true\n", ["dialogue.max_new_tokens", "an integer"]),
        ("asr: [1, 2]\n", ["'asr' must be a mapping"]),
        ("- just\n- a list\n", ["mapping at the top level"]),
        ("vad: {hangover_ms: 1\n", ["invalid YAML"]),
    ],
)
def test_invalid_config_names_file_and_key_in_one_line(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_and_unreadable_config_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(binary)


def test_env_var_then_user_file_then_project_file(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICEOS_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_config_path() is not None and default_config_path().name == "config.yaml"
    user = tmp_path / "xdg" / "voiceos" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("vad:\n  hangover_ms: 700\n")
    assert default_config_path() == user
    assert load_config().vad.hangover_ms == 700
    env_file = write(tmp_path, "vad:\n  hangover_ms: 900\n")
    monkeypatch.setenv("VOICEOS_CONFIG", str(env_file))
    assert load_config().vad.hangover_ms == 900


def test_device_index_written_as_number_becomes_a_string(tmp_path):
    assert load_config(write(tmp_path, "audio:\n  output_device: 3\n")).audio.output_device == "3"


def test_a_turn_check_after_the_maximum_silence_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, "turn:\n  check_ms: 900\n  max_silence_ms: 800\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "turn" in message
    assert "check_ms (900) must be below max_silence_ms (800)" in message
    silence_only = load_config(
        write(tmp_path, "turn:\n  end_of_turn: silence\n  check_ms: 900\n  max_silence_ms: 800\n")
    )
    assert silence_only.turn.end_of_turn == "silence"  # no model to ask: the two are not used
