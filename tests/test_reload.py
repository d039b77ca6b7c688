"""SIGHUP re-reads the config: live changes apply without dropping the conversation, a broken file is refused.

One real daemon process (tests/daemon_process.py) on the private PulseAudio server serves the module; the last test
runs the real unit under a real ``systemd --user`` and reloads it with ``systemctl --user reload``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from daemon_process import running_daemon
from systemd_manager import UserManager
from test_systemd import DAEMON_UNIT, _daemon_unit, _start

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.daemon.client import ControlClient
from voiceos.daemon.reload import changed_keys, is_live, merge
from voiceos.textnorm import normalize_words
from voiceos.tts.voices import default_voices_dir

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"
# The silence timer: with the turn model (the default) turn.max_silence_ms replaces vad.hangover_ms in the endpointer
# these tests reload.
SILENCE_TIMER = {"turn": {"end_of_turn": "silence"}, "wake": {"mode": "always"}}  # (and every utterance answered)
BASE = {"vad": {"hangover_ms": 500}, "dialogue": {"temperature": 0.0}, **SILENCE_TIMER}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reload") / "config.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


@pytest.fixture(scope="module")
def daemon(pulse_server, xdg_cache_home, config_file: Path):
    with running_daemon(pulse_server, xdg_cache_home, config_file.parent, config_file) as proc:
        yield proc


def _reload(daemon, config_file: Path, data: dict[str, Any] | str) -> dict[str, Any]:
    """Write the config file, send SIGHUP, and return the status once the daemon has dealt with it."""
    before = daemon.client.request("status")["config"]
    config_file.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    daemon.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = daemon.client.request("status")
        seen = status["config"]
        if (seen["reloads"], seen["refused"]) != (before["reloads"], before["refused"]):
            return status
        time.sleep(0.1)
    raise AssertionError(f"no reload within 60 s:\n{daemon.log_tail()}")


# -- what may change live, without a daemon ----------------------------------------------------------------------------


def test_changed_keys_split_into_live_and_restart_and_merge_keeps_the_running_model() -> None:
    from voiceos.config import config_from_dict

    old = config_from_dict(BASE)
    new = config_from_dict(
        {"vad": {"hangover_ms": 800}, "dialogue": {"model": "/elsewhere", "temperature": 0.5}, **SILENCE_TIMER}
    )
    changed = changed_keys(old, new)
    assert changed == ["vad.hangover_ms", "dialogue.model", "dialogue.temperature"]
    restart = [key for key in changed if not is_live(key)]
    assert restart == ["dialogue.model"]
    merged = merge(old, new, restart)
    assert (merged.dialogue.model, merged.dialogue.temperature, merged.vad.hangover_ms) == ("embedded", 0.5, 800)
    assert is_live("emotion.policy.sadness") and not is_live("vad.sample_rate") and not is_live("asr.model")


# -- the real daemon ----------------------------------------------------------------------------------------------


def test_sighup_applies_live_changes_and_keeps_the_conversation(daemon, config_file: Path, pulse_server):
    daemon.client.request("say", text="My name is Ada and I like lighthouses.")
    assert daemon.client.request("status")["history_messages"] == 2
    changes = {
        "vad": {"hangover_ms": 500, "max_utterance_s": 1.0},
        "dialogue": {"temperature": 0.7, "seed": 3, "system_prompt": "You are a terse assistant."},
        "emotion": {"policy": {"sadness": "calm"}},
        "asr": {"beam_size": 2},  # a model option: needs a restart
        **SILENCE_TIMER,
    }
    status = _reload(daemon, config_file, changes)
    last = status["config"]["last_reload"]
    assert last["ok"] and last["error"] is None, last
    assert sorted(last["applied"]) == [
        "dialogue.seed",
        "dialogue.system_prompt",
        "dialogue.temperature",
        "emotion.policy.sadness",
        "vad.max_utterance_s",
    ]
    assert last["needs_restart"] == ["asr.beam_size"]
    live = status["config"]["live"]
    assert live["vad"]["max_utterance_s"] == 1.0 and live["vad"]["hangover_ms"] == 500
    assert live["dialogue"]["temperature"] == 0.7 and live["dialogue"]["seed"] == 3
    assert live["dialogue"]["system_prompt"] == "You are a terse assistant."
    assert live["emotion"]["sadness"] == "calm"
    assert status["history_messages"] == 2 and status["state"] == "listening"
    log = daemon.log_tail(20_000).splitlines()
    applied = next(line for line in log if "config reloaded from" in line)
    assert all(key in applied for key in last["applied"]), applied
    assert any("config reload: asr.beam_size changed, kept at the running value until a restart" in x for x in log)

    # The new endpointer is the one in use: a 5 s sentence is cut at max_utterance_s.
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0890.wav", SAMPLE_RATE))
    ended = daemon.events.wait_for("speech_ended", mark, timeout=30)
    assert ended["forced"] and ended["seconds"] <= 1.2, ended
    spoken = daemon.events.wait_for("speaking_ended", mark, timeout=120)
    daemon.wait_until("listening", timeout=120)
    # The pieces cut before the reply could speak carried over: the answered turn holds words of several pieces.
    answered = [
        e for e in daemon.events.since(mark) if e["event"] == "transcript" and e["arrived"] <= spoken["arrived"]
    ]
    # ("unless to be rather cold hearted and rather selfish is to be ill disposed", heard by Whisper in 1 s pieces:
    # "I'll have to be... rather cold. and rather... selfish is to be able to smoke.")
    words = set(normalize_words(answered[-1]["text"]))
    assert {"rather", "cold", "selfish"} <= words, answered
    assert daemon.client.request("status")["history_messages"] >= 4  # the exchange before the reload is still there


def test_a_broken_config_on_sighup_is_refused_and_the_daemon_goes_on(daemon, config_file: Path):
    before = daemon.client.request("status")
    status = _reload(daemon, config_file, "vad:\n  hangover_ms: 900\n  no_such_key: 1\n")
    last = status["config"]["last_reload"]
    assert not last["ok"] and "vad.no_such_key" in last["error"], last
    assert status["config"]["live"] == before["config"]["live"]  # nothing of the broken file was applied
    assert "config reload refused" in daemon.log_tail(20_000)
    status = _reload(daemon, config_file, "vad: [unclosed\n")
    assert "invalid YAML" in status["config"]["last_reload"]["error"]
    assert daemon.process.poll() is None and status["state"] == "listening"
    assert status["history_messages"] == before["history_messages"]
    assert daemon.client.request("say", text="Are you still there?")["reply"]


def test_sighup_switches_the_voice_without_a_restart(daemon, config_file: Path, tmp_path: Path):
    voices = tmp_path / "voices"
    voices.mkdir()
    profile = yaml.safe_load((default_voices_dir() / "joe.yaml").read_text())
    profile.update(name="slowjoe", base={**profile["base"], "length_scale": 1.3})
    (voices / "slowjoe.yaml").write_text(yaml.safe_dump(profile))
    messages = daemon.client.request("status")["history_messages"]
    status = _reload(daemon, config_file, {**BASE, "tts": {"voice": "slowjoe", "voices_dir": str(voices)}})
    assert status["config"]["last_reload"]["ok"], status["config"]["last_reload"]
    assert status["models"]["voice"] == "slowjoe" and status["config"]["live"]["voice"] == "slowjoe"
    assert status["history_messages"] == messages
    reply = daemon.client.request("say", text="Say something slowly.")
    assert reply["audio"]["played"] and reply["audio"]["seconds"] > 0
    # Back to the shipped voice: the file loses the keys, so they return to their defaults.
    status = _reload(daemon, config_file, BASE)
    assert status["models"]["voice"] == "joe"


# -- systemctl --user reload ----------------------------------------------------------------------------------------


@pytest.mark.audio
def test_systemctl_reload_applies_the_config_and_the_unit_stays_active(
    daemon_manager: UserManager, pulse_server, xdg_cache_home: Path
) -> None:
    config = daemon_manager.root / "config.yaml"
    config.write_text(yaml.safe_dump({"vad": {"hangover_ms": 500}, **SILENCE_TIMER}))
    log = _daemon_unit(daemon_manager, pulse_server, xdg_cache_home, {"VOICEOS_CONFIG": str(config)})
    _start(daemon_manager, DAEMON_UNIT, log, timeout=330)
    client = ControlClient(daemon_manager.runtime_dir / "voiceos" / "control.sock", timeout=30)
    assert client.request("status")["config"]["reloads"] == 0
    main_pid = daemon_manager.show(DAEMON_UNIT, "MainPID")["MainPID"]

    config.write_text(yaml.safe_dump({"vad": {"hangover_ms": 700}, **SILENCE_TIMER}))
    daemon_manager.systemctl("reload", DAEMON_UNIT)
    deadline = time.monotonic() + 30
    while (status := client.request("status"))["config"]["reloads"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status["config"]["last_reload"]["applied"] == ["vad.hangover_ms"], status["config"]
    assert status["config"]["live"]["vad"]["hangover_ms"] == 700
    props = daemon_manager.wait_for(DAEMON_UNIT, 10, ActiveState="active", SubState="running")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), daemon_manager.journal(DAEMON_UNIT)
    shown = daemon_manager.show(DAEMON_UNIT, "MainPID", "NRestarts", "StatusText")
    assert (shown["MainPID"], shown["NRestarts"]) == (main_pid, "0")  # the same process: reloaded, not restarted
    assert "config reloaded" in shown["StatusText"], shown


def test_reloading_message_carries_monotonic_usec(tmp_path: Path) -> None:
    """What Type=notify-reload expects: RELOADING=1 and MONOTONIC_USEC=<CLOCK_MONOTONIC now, in µs>."""
    import socket

    from voiceos.daemon.sdnotify import Notifier

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        with Notifier(str(path)) as notifier:
            assert notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        fields = dict(line.split("=", 1) for line in server.recv(4096).decode().splitlines())
    assert fields["RELOADING"] == "1" and before <= int(fields["MONOTONIC_USEC"]) <= after
