"""Faults the daemon must survive or report: unusable models (exit 78, no restart loop under systemd), a start limit
for other failures, and a microphone that is unplugged and plugged back in.

Everything is real: ``python -m voiceos run`` as a process, the private PulseAudio server, a real ``systemd --user``.
Time bounds are the issue's own (recover within 5 s), with the slack each assertion states.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from daemon_process import running_daemon
from systemd_manager import UserManager, edit_unit

from voiceos.asr import SAMPLE_RATE
from voiceos.audio.files import read_audio
from voiceos.daemon.main import EX_CONFIG
from voiceos.daemon.service import quote_exec_arg, render_unit
from voiceos.models import embedded_piper_voice
from voiceos.textnorm import word_error_rate

LIBRIVOX = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "librivox_cmusphinx" / "audio"
UNIT = "voiceos.service"
RECOVERY_S = 5.0  # the issue: the daemon recovers from a device that comes back within 5 s


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def broken_model_configs(tmp_path: Path) -> dict[str, tuple[dict, str]]:
    """Configs that validate but name a model that cannot load; with what the error must mention."""
    missing = tmp_path / "no-such-model"
    voice_dir = tmp_path / "voice"
    voice_dir.mkdir()
    (voice_dir / "broken.onnx").write_bytes(b"this is not an ONNX model" * 100)
    _, real_json = embedded_piper_voice()
    (voice_dir / "broken.onnx.json").write_text(real_json.read_text())
    _write_config(voice_dir / "broken.yaml", {"name": "broken", "engine": "piper", "model": "broken.onnx"})
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "labels.json").write_text('["joy", "sadness"]')
    (checkpoint / "head.json").write_text("{not json")
    (checkpoint / "head.safetensors").write_bytes(b"\x00garbage" * 64)
    return {
        "missing dialogue model": ({"dialogue": {"model": str(missing)}}, str(missing)),
        "corrupt voice": ({"tts": {"voice": str(voice_dir / "broken.yaml")}}, "broken.onnx"),
        "corrupt emotion checkpoint": ({"emotion": {"checkpoint": str(checkpoint)}}, str(checkpoint)),
    }


# -- a model that does not load ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing dialogue model", "corrupt voice", "corrupt emotion checkpoint"])
def test_run_with_an_unusable_model_exits_78_with_one_line(case: str, tmp_path: Path, no_sound_env) -> None:
    import subprocess

    data, fragment = broken_model_configs(tmp_path)[case]
    config = _write_config(tmp_path / "config.yaml", data)
    cmd = [sys.executable, "-m", "voiceos", "--config", str(config), "run"]
    proc = subprocess.run(cmd, env=no_sound_env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == EX_CONFIG, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("voiceos: error: ") and fragment in last, proc.stderr[-3000:]


def test_run_with_an_invalid_config_file_exits_78_but_other_commands_exit_1(tmp_path: Path, no_sound_env) -> None:
    import subprocess

    config = tmp_path / "config.yaml"
    config.write_text("vad:\n  hangover_ms: lots\n")
    for command, status in (("run", EX_CONFIG), ("doctor", 1)):
        cmd = [sys.executable, "-m", "voiceos", "--config", str(config), command]
        proc = subprocess.run(cmd, env=no_sound_env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == status, (command, proc.stderr[-2000:])
        assert proc.stderr.strip().splitlines()[-1].startswith("voiceos: error: ") and "vad.hangover_ms" in proc.stderr


# -- the same under systemd: failed, not restarting ---------------------------------------------------------------


def _install(manager: UserManager, env: dict[str, str], **replace: str) -> Path:
    """The real unit (hardening included); its output appended to a file, which stands in for the journal."""
    log = manager.root / f"{UNIT}.log"
    log.write_text("")
    add = [f"StandardOutput=append:{log}", "StandardError=inherit", *(f"Environment={k}={v}" for k, v in env.items())]
    manager.install_unit(UNIT, edit_unit(render_unit(), replace=replace, add=add))
    return log


def _wait_until_settled(manager: UserManager, timeout: float) -> dict[str, str]:
    """Poll until the unit is neither starting nor waiting to restart; returns its properties."""
    props = ("ActiveState", "SubState", "Result", "NRestarts", "ExecMainStatus", "StatusText")
    deadline = time.monotonic() + timeout
    while True:
        shown = manager.show(UNIT, *props)
        if shown["ActiveState"] not in ("activating", "deactivating") or time.monotonic() > deadline:
            return shown
        time.sleep(0.2)


def test_unit_with_a_missing_model_fails_once_says_why_and_is_not_restarted(daemon_manager: UserManager) -> None:
    missing = daemon_manager.root / "no-such-model"
    config = _write_config(daemon_manager.root / "broken.yaml", {"dialogue": {"model": str(missing)}})
    log = _install(daemon_manager, {"VOICEOS_CONFIG": str(config)})
    result = daemon_manager.systemctl("start", UNIT, check=False, timeout=330)
    assert result.returncode != 0  # the start job fails: the daemon never sent READY=1
    props = _wait_until_settled(daemon_manager, 60)
    assert (props["ActiveState"], props["Result"], props["ExecMainStatus"]) == ("failed", "exit-code", "78"), (
        props,
        log.read_text()[-3000:],
    )
    assert props["NRestarts"] == "0"
    time.sleep(5)  # RestartSec=2 twice over: a restart would have happened by now
    again = daemon_manager.show(UNIT, "ActiveState", "NRestarts")
    assert again == {"ActiveState": "failed", "NRestarts": "0"}, daemon_manager.journal(UNIT)
    # The reason: in the unit's status text (systemctl status shows it) and as the last line of its output.
    reason = f"dialogue model directory {missing} does not exist"
    assert reason in props["StatusText"], props
    assert log.read_text().strip().splitlines()[-1] == f"voiceos: error: {reason}"
    shown = daemon_manager.systemctl("status", UNIT, check=False).stdout
    assert "(code=exited, status=78" in shown and f'Status: "failed: {reason}"' in shown, shown


def test_a_unit_that_keeps_failing_stops_at_the_start_limit(daemon_manager: UserManager) -> None:
    """Any other failure is restarted (RestartSec=2), but StartLimitBurst=5 in 120 s ends the loop."""
    _install(daemon_manager, {}, ExecStart=f"{quote_exec_arg(sys.executable)} -c 'raise SystemExit(1)'")
    mark = daemon_manager.log_mark()
    daemon_manager.systemctl("start", UNIT, check=False, timeout=60)
    # while restarts are due it is activating/auto-restart
    props = daemon_manager.wait_for(UNIT, 60, ActiveState="failed")
    assert props["ActiveState"] == "failed", daemon_manager.journal(UNIT)
    restarts = daemon_manager.show(UNIT, "NRestarts")["NRestarts"]
    assert restarts == "5", daemon_manager.journal(UNIT)  # 5 restarts scheduled; the 6th start in 120 s is refused
    assert f"{UNIT}: Start request repeated too quickly." in daemon_manager.log_since(mark)
    time.sleep(5)
    assert daemon_manager.show(UNIT, "ActiveState", "NRestarts") == {"ActiveState": "failed", "NRestarts": restarts}


# -- the microphone unplugged and plugged back in ------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(pulse_server, xdg_cache_home, tmp_path_factory):
    """The daemon on the virtual microphone by name, as for a USB microphone: it waits for that one device."""
    directory = tmp_path_factory.mktemp("faults")
    config = _write_config(directory / "config.yaml", {"audio": {"input_device": "vmic"}})
    with running_daemon(pulse_server, xdg_cache_home, directory, config) as proc:
        yield proc


def _answers_an_utterance(daemon, pulse_server) -> None:
    mark = daemon.events.mark()
    pulse_server.speak_into_mic(read_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930.wav", SAMPLE_RATE))
    transcript = daemon.events.wait_for("transcript", mark, timeout=60)
    assert word_error_rate("he might even have been made amiable himself", transcript["text"]) <= 0.2, transcript
    daemon.events.wait_for("speaking_ended", mark, timeout=120)
    daemon.wait_until("listening", timeout=60)


def test_microphone_unplugged_and_back_the_server_moves_the_stream_and_the_daemon_answers(daemon, pulse_server):
    """PulseAudio moves a stream whose source goes away (here onto the speaker's monitor, the only source left),
    and back to the microphone when it returns: the daemon stays up, listening, and hears the user again."""
    pulse_server.remove_microphone()
    try:
        time.sleep(2.0)
        assert daemon.client.request("status")["state"] == "listening"
    finally:
        pulse_server.add_microphone()
    _answers_an_utterance(daemon, pulse_server)
    assert daemon.process.poll() is None


def test_microphone_whose_stream_ends_is_reopened_within_5_s_of_coming_back(daemon, pulse_server):
    """The stream itself ends (the server had nowhere to move it): the daemon says so, retries, and is listening
    again within 5 s of the device's return."""
    lost_before = daemon.client.request("status")["devices"]["lost"]
    pulse_server.remove_microphone()
    try:
        assert pulse_server.end_recording_streams(daemon.process.pid), "the daemon had no recording stream"
        daemon.wait_until("no_audio", timeout=10)  # the stall shows after STALL_S (3 s) without audio
        time.sleep(8.0)  # long enough for the retry backoff to reach its longest interval
        status = daemon.client.request("status")
        assert status["state"] == "no_audio" and "vmic" in status["devices"]["error"], status
        assert "retrying" in status["detail"], status
    finally:
        pulse_server.add_microphone()
    back = time.monotonic()
    daemon.wait_until("listening", timeout=30)
    took = time.monotonic() - back
    # 5 s is the requirement; +0.5 s for the 0.2 s status polling and two busy cores.
    assert took < RECOVERY_S + 0.5, f"listening again {took:.1f} s after the microphone came back"
    status = daemon.client.request("status")
    assert status["devices"]["lost"] == lost_before + 1 and status["devices"]["error"] is None, status["devices"]
    assert "audio stopped: microphone vmic" in daemon.log_tail(1_000_000)
    _answers_an_utterance(daemon, pulse_server)
