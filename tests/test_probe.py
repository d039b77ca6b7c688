"""The device check in a child process: what it reports for devices that open, are gone, crash or hang."""

from __future__ import annotations

import asyncio
import sys

from voiceos.audio.probe import probe_command, probe_devices
from voiceos.config import AudioOptions


def _probe(command: list[str], timeout: float = 10.0) -> str | None:
    return asyncio.run(probe_devices(command, "the test devices", timeout))


def test_devices_that_open_pass_the_check(pulse_server):
    assert _probe(probe_command(AudioOptions(input_device="vmic", output_device="auto"))) is None


def test_a_microphone_whose_source_is_gone_fails_the_check_with_one_line_naming_it(pulse_server):
    pulse_server.remove_microphone()
    try:
        failure = _probe(probe_command(AudioOptions(input_device="vmic")))
    finally:
        pulse_server.add_microphone()
    assert failure is not None and "\n" not in failure
    assert "vmic" in failure and "cannot open microphone" in failure, failure


def test_a_device_name_that_matches_nothing_fails_the_check(pulse_server):
    failure = _probe(probe_command(AudioOptions(input_device="no-such-microphone")))
    assert failure is not None and "'no-such-microphone': not found" in failure, failure


def test_a_check_that_crashes_is_a_failed_try_not_the_callers_end():
    failure = _probe([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    assert failure is not None and "SIGSEGV" in failure and "the test devices" in failure, failure


def test_a_check_that_hangs_is_killed_at_its_timeout():
    failure = _probe([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0)
    assert failure is not None and "did not return within 1 s" in failure, failure
