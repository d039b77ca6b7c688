"""Privacy: what the user said stays out of logs, is saved only when asked, and `voiceos forget` erases it.

The log tests run the real pipeline (LM + TTS) in-process; one test runs the real daemon (no audio device) with
``save_transcripts`` on and erases everything with the real ``voiceos forget``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from daemon_process import DaemonProcess
from test_control import ServerThread

from voiceos.config import PrivacyOptions, load_config
from voiceos.errors import ConfigError
from voiceos.privacy import TranscriptLog, redact

USER_TEXT = "My secret word is periwinkle, please keep it safe."
NOTHING = "nothing to erase: no conversation memory, saved transcripts or reply audio"


def run_voiceos(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "voiceos", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def forget_env(tmp_path, short_tmp_dir) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        XDG_RUNTIME_DIR=str(short_tmp_dir),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        TMPDIR=str(tmp_path / "tmp"),
    )
    env.pop("VOICEOS_CONFIG", None)
    return env


# -- pure pieces --------------------------------------------------------------------------------------------------


def test_redact_shows_only_the_length_unless_asked():
    assert redact(USER_TEXT) == f"<redacted {len(USER_TEXT)} chars>"
    assert redact(USER_TEXT, show=True) == USER_TEXT
    assert redact("") == "<redacted 0 chars>"


def test_privacy_defaults_are_off_and_wrong_types_are_refused(tmp_path):
    assert PrivacyOptions() == PrivacyOptions(log_transcripts=False, save_transcripts=False)
    path = tmp_path / "config.yaml"
    path.write_text("privacy:\n  save_transcripts: true\n")
    assert load_config(path).privacy == PrivacyOptions(save_transcripts=True)
    path.write_text("privacy:\n  log_transcripts: sometimes\n")
    with pytest.raises(ConfigError, match=r"'privacy.log_transcripts' must be true or false"):
        load_config(path)


def test_transcript_log_appends_json_lines_in_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    directory = tmp_path / "data" / "voiceos"
    directory.mkdir(parents=True)
    os.chmod(directory, 0o755)  # left loose by something else: tightened on the first write
    transcripts = TranscriptLog()
    assert transcripts.path == directory / "transcripts.jsonl"
    transcripts.append("say", USER_TEXT, "I will keep it safe.", "neutral", False)
    transcripts.append("microphone", 'Ünïcödé, "quotes"\nand a newline', "Sure.", None, True)
    assert mode(directory) == 0o700 and mode(transcripts.path) == 0o600
    records = [json.loads(line) for line in transcripts.path.read_text(encoding="utf-8").splitlines()]
    assert [{k: v for k, v in r.items() if k != "time"} for r in records] == [
        {"source": "say", "user": USER_TEXT, "reply": "I will keep it safe.", "user_emotion": "neutral",
         "interrupted": False},
        {"source": "microphone", "user": "Ünïcödé, \"quotes\"\nand a newline", "reply": "Sure.", "user_emotion": None,
         "interrupted": True},
    ]  # fmt: skip
    assert all(datetime.fromisoformat(r["time"]).tzinfo is not None for r in records)


def test_transcript_log_that_cannot_write_warns_once_without_the_content(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    transcripts = TranscriptLog(blocker / "transcripts.jsonl")
    with caplog.at_level(logging.WARNING, logger="voiceos.privacy"):
        transcripts.append("say", USER_TEXT, "a reply", None, False)
        transcripts.append("say", USER_TEXT, "a reply", None, False)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "cannot save transcripts" in caplog.text and "periwinkle" not in caplog.text


# -- logs of a real turn ------------------------------------------------------------------------------------------


def test_turn_logs_show_what_was_said_only_with_log_transcripts(test_config, device_plan, lm, tts_engine, caplog):
    from voiceos.pipeline import Pipeline

    for show in (False, True):
        config = dataclasses.replace(test_config, privacy=PrivacyOptions(log_transcripts=show))
        pipeline = Pipeline(config, device_plan, lm=lm, tts=tts_engine, voice=tts_engine.profile)
        caplog.clear()
        with caplog.at_level(logging.DEBUG):  # every logger, every level
            turn = pipeline.reply(USER_TEXT)
        logged = caplog.text
        assert len(turn.reply) > 10, turn.reply
        if show:
            assert USER_TEXT in logged and turn.reply in logged
        else:
            assert USER_TEXT not in logged and turn.reply not in logged and "periwinkle" not in logged.lower()
            assert f"turn: <redacted {len(USER_TEXT)} chars> -> <redacted {len(turn.reply)} chars>" in logged


# -- voiceos forget -----------------------------------------------------------------------------------------------


def test_forget_erases_transcripts_and_reply_audio_keeps_the_model_cache_and_is_idempotent(tmp_path, forget_env):
    transcripts = tmp_path / "data" / "voiceos" / "transcripts.jsonl"
    facts = transcripts.with_name("memory.json")  # privacy.remember
    replies = [Path(forget_env["XDG_RUNTIME_DIR"]) / "voiceos" / "last-reply.wav"]
    replies.append(tmp_path / "tmp" / "voiceos" / "last-reply.wav")  # from a session without a runtime dir
    model = tmp_path / "cache" / "voiceos" / "lm" / "model.safetensors"
    for path in (transcripts, facts, *replies, model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"something personal")

    proc = run_voiceos("forget", env=forget_env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines() == [
        f"erased the facts kept across restarts: {facts}",
        f"erased saved transcripts: {transcripts}",
        f"erased the last reply's audio: {replies[0]}",
        f"erased the last reply's audio: {replies[1]}",
    ]
    assert not transcripts.parent.exists()  # the directory held only the transcripts
    assert not any(path.exists() for path in replies)
    assert replies[0].parent.is_dir()  # the runtime directory also holds the control socket: kept
    assert model.read_bytes() == b"something personal"  # the model cache is not personal: kept

    again = run_voiceos("forget", env=forget_env)
    assert (again.returncode, again.stdout, again.stderr) == (0, NOTHING + "\n", "")
    assert model.exists()


def test_forget_with_a_config_that_does_not_load_still_forgets(tmp_path, forget_env):
    broken = tmp_path / "broken.yaml"
    broken.write_text("privacy: [\n")
    transcripts = tmp_path / "data" / "voiceos" / "transcripts.jsonl"
    transcripts.parent.mkdir(parents=True)
    transcripts.write_text("{}\n")
    proc = run_voiceos("--config", str(broken), "forget", env=forget_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"erased saved transcripts: {transcripts}"]


def test_forget_reports_a_daemon_that_refuses_it_in_one_line_and_still_erases_files(tmp_path, forget_env):
    socket_path = Path(forget_env["XDG_RUNTIME_DIR"]) / "voiceos" / "control.sock"
    server = ServerThread(socket_path, allowed_uid=os.getuid() + 1)  # a daemon of another user, in effect
    try:
        transcripts = tmp_path / "data" / "voiceos" / "transcripts.jsonl"
        transcripts.parent.mkdir(parents=True)
        transcripts.write_text("{}\n")
        proc = run_voiceos("forget", env=forget_env)
    finally:
        server.stop()
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [f"erased saved transcripts: {transcripts}"]
    errors = proc.stderr.splitlines()
    assert len(errors) == 1 and errors[0].startswith("voiceos: error: could not clear the running daemon's memory:")
    assert "permission denied" in errors[0]
    assert server.handler.calls == []


# -- the real daemon ----------------------------------------------------------------------------------------------


def test_daemon_logs_no_transcripts_saves_them_when_asked_and_forget_erases_them(tmp_path, no_sound_env, short_tmp_dir):
    (tmp_path / "tmp").mkdir()  # a TMPDIR of its own: forget also looks in $TMPDIR/voiceos (else /tmp/voiceos)
    env = dict(no_sound_env, XDG_RUNTIME_DIR=str(short_tmp_dir), XDG_DATA_HOME=str(tmp_path / "data"))
    env["TMPDIR"] = str(tmp_path / "tmp")
    config = tmp_path / "config.yaml"
    config.write_text("privacy:\n  save_transcripts: true\n")  # log_transcripts stays off (the default)
    daemon = DaemonProcess(env, tmp_path, config=config)
    try:
        daemon.wait_until("no_audio")
        result = daemon.client.request("say", text=USER_TEXT)
        reply = result["spoken_text"]
        assert len(reply) > 10 and daemon.client.request("status")["history_messages"] == 2, daemon.log_tail()

        log = daemon.log_tail(10**7)
        assert f"turn: <redacted {len(USER_TEXT)} chars> -> <redacted {len(reply)} chars>" in log
        assert USER_TEXT not in log and reply not in log and "periwinkle" not in log.lower()

        transcripts = tmp_path / "data" / "voiceos" / "transcripts.jsonl"
        assert mode(transcripts.parent) == 0o700 and mode(transcripts) == 0o600
        [record] = [json.loads(line) for line in transcripts.read_text(encoding="utf-8").splitlines()]
        assert (record["source"], record["user"], record["reply"]) == ("say", USER_TEXT, reply)
        assert record["user_emotion"] == result["user_emotion"]["label"] and record["interrupted"] is False

        set_reminder = daemon.client.request("say", text="Remind me to water the plants tomorrow at 9.")
        assert set_reminder["skill"] == "VoiceosSetReminder", set_reminder
        reminders = tmp_path / "data" / "voiceos" / "reminders.json"
        assert mode(reminders) == 0o600
        listed = run_voiceos("reminders", env=env)
        assert listed.returncode == 0 and listed.stdout.splitlines()[1].endswith("09:00  water the plants"), listed

        forget = run_voiceos("forget", env=env)
        assert forget.returncode == 0 and forget.stderr == "", forget.stderr + daemon.log_tail()
        assert forget.stdout.splitlines() == [
            "erased the running daemon's conversation memory (4 messages)",
            f"erased the reminders: {reminders}",
            f"erased saved transcripts: {transcripts}",
        ], forget.stdout + daemon.log_tail()
        assert daemon.client.request("reminders")["reminders"] == []  # the daemon's book follows the file
        assert daemon.client.request("status")["history_messages"] == 0
        assert not transcripts.parent.exists()
        again = run_voiceos("forget", env=env)
        assert (again.returncode, again.stdout) == (0, NOTHING + "\n")
    finally:
        daemon.stop()
