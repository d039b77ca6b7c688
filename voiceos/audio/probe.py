"""Try to open the audio devices in a short-lived child process before the daemon opens them itself.

Why: an open that fails can crash inside native code. Seen here (CI, and again in a loop of unplug / reopen): with
the microphone's PulseAudio source gone, ALSA's pulse plugin fails ``pulse_prepare`` ("Unable to create stream: No
such entity"), and a later failing ``Pa_OpenStream`` of the same kind segfaulted the whole daemon. While a lost device
is retried, the tries therefore run in a child: one that crashes costs that child, and the daemon only opens a device
in its own process once a child could. The child takes ~0.3 s (Python, numpy, PortAudio's init); the first open at
start-up runs directly.

``python -m voiceos.audio.probe --input SPEC --output SPEC [--rate N]`` exits 0 when both streams opened (and
closed), else 1 with one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from voiceos.config import AudioOptions

PROBE_TIMEOUT_S = 10.0


def probe_command(audio: AudioOptions) -> list[str]:
    """The child's command line for ``audio``'s devices."""
    return [
        sys.executable,
        "-m",
        "voiceos.audio.probe",
        "--input",
        str(audio.input_device),
        "--output",
        str(audio.output_device),
        "--rate",
        str(audio.input_sample_rate),
    ]


async def probe_devices(command: list[str], what: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Run ``command`` (see :func:`probe_command`); None if the devices opened, else a one-line reason that names
    ``what`` was tried. A child that crashes or hangs is a failed try, not the daemon's end."""
    try:
        child = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # ALSA's and PortAudio's chatter
        )
    except OSError as err:
        return f"cannot start the device check for {what}: {err.strerror or err}"
    try:
        out, _ = await asyncio.wait_for(child.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        return f"opening {what} did not return within {timeout:.0f} s (the sound system does not answer)"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        raise
    if child.returncode == 0:
        return None
    if child.returncode is not None and child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        return f"opening {what} crashed the audio library ({name}, in a device check, not in the daemon)"
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else f"cannot open {what} (device check exit status {child.returncode})"


def _open_once(input_spec: str, output_spec: str, rate: int) -> None:
    from voiceos.audio.microphone import Microphone
    from voiceos.audio.playback import ChunkPlayer, resolve_device

    player = ChunkPlayer(22050, resolve_device(output_spec, "output"))
    try:
        loop = asyncio.new_event_loop()
        try:
            Microphone(resolve_device(input_spec, "input"), sample_rate=rate, loop=loop).close()
        finally:
            loop.close()
    finally:
        player.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voiceos.audio.probe", description=__doc__)
    parser.add_argument("--input", default="auto")
    parser.add_argument("--output", default="auto")
    parser.add_argument("--rate", type=int, default=0)
    args = parser.parse_args(argv)
    from voiceos.errors import AudioDeviceError

    try:
        _open_once(args.input, args.output, args.rate)
    except AudioDeviceError as err:
        print(err, flush=True)
        return 1
    except Exception as err:
        print(f"{type(err).__name__}: {err}".splitlines()[0], flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
