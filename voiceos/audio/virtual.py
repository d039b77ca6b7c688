"""A private PulseAudio server with a virtual speaker and microphone, for tests and `voiceos bench` (TESTBED.md).

Devices, as PortAudio (ALSA) sees them once :meth:`PulseServer.activate` has run in the test process:

- ``vspk``: the virtual speaker, null sink ``spk`` (48 kHz mono). What is played there can be recorded from
  ``spkmon`` (``spk.monitor``), e.g. with :meth:`PulseServer.start_recording`.
- ``vmic``: the virtual microphone, a remap of ``micsink.monitor`` (16 kHz mono); audio sent with
  :meth:`PulseServer.speak_into_mic` comes out of it.

Faults, for tests: :meth:`PulseServer.kill` (the server crashes), :meth:`PulseServer.remove_microphone` /
:meth:`PulseServer.add_microphone` (vmic unplugged and plugged back in) and
:meth:`PulseServer.end_recording_streams` (the server ends a client's recording streams).

The test process keeps its HOME: libpulse only writes a cookie there, and PULSE_COOKIE/PULSE_CLIENTCONFIG point
that into the server's directory instead.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from voiceos.audio.rate import SAMPLE_RATE

SPEAKER_RATE = 48000
BINARIES = ("pulseaudio", "pactl", "pacat", "parec")
CLIENT_ENV_KEYS = ("XDG_RUNTIME_DIR", "PULSE_SERVER", "ALSA_CONFIG_PATH", "PULSE_COOKIE", "PULSE_CLIENTCONFIG")
MIC_MODULE = ("module-remap-source", "master=micsink.monitor", "source_name=vmic")

PA_SCRIPT = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=spk rate={speaker_rate} channels=1
load-module module-null-sink sink_name=micsink rate={mic_rate} channels=1
load-module {mic_module}
set-default-sink spk
set-default-source vmic
"""

ASOUNDRC = """\
pcm.vspk { type pulse; device "spk" }
pcm.spkmon { type pulse; device "spk.monitor" }
pcm.vmic { type pulse; device "vmic" }
"""


class PulseUnavailable(RuntimeError):
    """The PulseAudio binaries are missing or the server does not come up."""


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


class Recorder:
    """``parec`` on a source, read by a thread (a pipe would fill in a third of a second otherwise)."""

    def __init__(self, env: dict[str, str], source: str = "spk.monitor", rate: int = SPEAKER_RATE) -> None:
        self.rate = rate
        self.started_at: float | None = None  # time.monotonic() of the first recorded sample
        self._chunks: list[bytes] = []
        cmd = ["parec", "-d", source, "--raw", "--format=float32le", f"--rate={rate}", "--channels=1"]
        self._proc = subprocess.Popen([*cmd, "--latency-msec=10"], stdout=subprocess.PIPE, env=env)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert isinstance(self._proc.stdout, io.BufferedReader)  # stdout=PIPE with the default buffering
        while chunk := self._proc.stdout.read1(65536):
            if self.started_at is None:
                self.started_at = time.monotonic() - len(chunk) / 4 / self.rate
            self._chunks.append(chunk)

    def stop(self) -> np.ndarray:
        """End the recording; returns float32 mono samples at :attr:`rate`."""
        self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)
        data = b"".join(self._chunks)
        return np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float32)


class PulseServer:
    """One private server in ``root``; start/stop/kill/restart it, drive the virtual mic, record the speaker."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.socket = self.root / "pulse.sock"
        if len(str(self.socket)) > 100:  # AF_UNIX paths are limited to 108 bytes
            self.root = Path(tempfile.mkdtemp(prefix="voiceos-pa-"))
            self.socket = self.root / "pulse.sock"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "pa.pa").write_text(
            PA_SCRIPT.format(
                socket=self.socket, speaker_rate=SPEAKER_RATE, mic_rate=SAMPLE_RATE, mic_module=" ".join(MIC_MODULE)
            )
        )
        (self.root / "asoundrc").write_text(ASOUNDRC)
        (self.root / "client.conf").write_text("autospawn = no\n")
        # Realtime scheduling stays (as on a desktop), but without its CPU-time limit: at the default 200 ms the
        # kernel SIGKILLs the server when a null sink's realtime thread renders a long catch-up (a VM paused under
        # load), and every client sees "Connection terminated" mid-test.
        (self.root / "daemon.conf").write_text("rlimit-rttime = -1\n")
        self.client_env = {
            "XDG_RUNTIME_DIR": str(self.root),
            "PULSE_SERVER": f"unix:{self.socket}",
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.root / 'asoundrc'}",
            "PULSE_COOKIE": str(self.root / "cookie"),
            "PULSE_CLIENTCONFIG": str(self.root / "client.conf"),
        }
        self.env = {**os.environ, **self.client_env}  # for subprocesses that should use the server
        self.log_path = self.root / "pulseaudio.log"
        self._server: subprocess.Popen[bytes] | None = None
        self._keepalive: list[subprocess.Popen[bytes]] = []
        self._saved_env: dict[str, str | None] | None = None

    # -- server lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        missing = missing_binaries()
        if missing:
            raise PulseUnavailable(
                f"PulseAudio test server needs {', '.join(missing)}: install the Debian packages "
                "pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins (see the Makefile)"
            )
        if self.running:
            return
        atexit.register(self.stop)  # a test process that dies of an exception must not leave a server behind
        server_env = {**self.env, "HOME": str(self.root), "PULSE_CONFIG": str(self.root / "daemon.conf")}
        cmd = ["pulseaudio", "-n", "-F", str(self.root / "pa.pa"), "--daemonize=no", "--exit-idle-time=-1"]
        with open(self.log_path, "ab") as log:
            self._server = subprocess.Popen(
                [*cmd, "--log-target=stderr", "--log-level=error"], stdout=log, stderr=log, env=server_env
            )
        deadline = time.monotonic() + timeout
        while self.pactl("info", check=False).returncode != 0:
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise PulseUnavailable(f"PulseAudio test server did not start; its log ends with:\n{tail}")
            time.sleep(0.02)
        # An idle null sink runs ~2 s ahead and new streams stall: keep both clocks busy, then resync them.
        for source in ("spk.monitor", "vmic"):
            self._keepalive.append(
                subprocess.Popen(
                    ["parec", "--latency-msec=5", "-d", source, "--raw"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=self.env,
                )
            )
        for sink in ("spk", "micsink"):
            self.pactl("suspend-sink", sink, "1")
            self.pactl("suspend-sink", sink, "0")

    @property
    def running(self) -> bool:
        return self._server is not None and self._server.poll() is None

    def stop(self) -> None:
        """SIGTERM the server and its helper clients, and wait for them."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests); helper clients are reaped too."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: int) -> None:
        procs = [*self._keepalive, self._server] if self._server else list(self._keepalive)
        for proc in reversed(procs):  # the server first, so clients see it go
            if proc.poll() is None:
                proc.send_signal(sig)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._keepalive = []
        self._server = None
        atexit.unregister(self.stop)

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10, check=check)

    # -- faults -------------------------------------------------------------------------------------------------

    def remove_microphone(self) -> None:
        """Unplug ``vmic``: unload its module. The server moves the streams recording from it to another source;
        here the only ones left are the sinks' monitors (``spk.monitor``: what the speaker plays)."""
        modules = self.pactl("list", "short", "modules").stdout.splitlines()
        index = next((line.split()[0] for line in modules if "source_name=vmic" in line), None)
        if index is None:
            raise RuntimeError("the virtual microphone vmic is not loaded")
        self.pactl("unload-module", index)

    def add_microphone(self) -> None:
        """Plug ``vmic`` back in. Streams that asked for it, or for the default source, move back to it."""
        self.pactl("load-module", *MIC_MODULE)
        self.pactl("set-default-source", "vmic")
        # As in start(): the idle null sink behind vmic has run ahead; resync it, or vmic's streams stall for ~2 s.
        self.pactl("suspend-sink", "micsink", "1")
        self.pactl("suspend-sink", "micsink", "0")

    def end_recording_streams(self, pid: int) -> list[int]:
        """End every recording stream of process ``pid`` on the server side, as the server does when the device
        it records from is gone and it has nowhere to move the stream to. Returns the streams' indices.

        pactl has no command for it; the server's command-line protocol (loaded on first use) has.
        """
        outputs = json.loads(self.pactl("--format=json", "list", "source-outputs").stdout or "[]")
        ours = [o["index"] for o in outputs if str(o.get("properties", {}).get("application.process.id")) == str(pid)]
        cli = self.root / "cli.sock"
        if not cli.exists():
            self.pactl("load-module", "module-cli-protocol-unix", f"socket={cli}")
        for index in ours:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(cli))
                sock.sendall(f"kill-source-output {index}\n".encode())  # never "exit": it stops the server
                sock.shutdown(socket.SHUT_WR)
                reply = b"".join(iter(functools.partial(sock.recv, 4096), b"")).decode(errors="replace").strip()
            if reply:
                raise RuntimeError(f"kill-source-output {index}: {reply}")
        return ours

    # -- the test process ---------------------------------------------------------------------------------------

    def activate(self) -> None:
        """Point this process's ALSA/PortAudio at the server (PortAudio lists devices only when initialised)."""
        if self._saved_env is None:
            self._saved_env = {key: os.environ.get(key) for key in CLIENT_ENV_KEYS}
        os.environ.update(self.client_env)
        reinitialize_portaudio()

    def deactivate(self) -> None:
        if self._saved_env is None:
            return
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = None
        reinitialize_portaudio()

    # -- audio helpers ------------------------------------------------------------------------------------------

    def speak_into_mic(
        self,
        source: str | os.PathLike[str] | np.ndarray,
        sample_rate: int = SAMPLE_RATE,
        wait: bool = True,
        latency_ms: int = 100,
    ) -> subprocess.Popen[bytes]:
        """Play a file or a float array into the virtual microphone (``vmic``); waits until it has been sent.

        It arrives bit-exact on ``vmic``. ``latency_ms`` is pacat's buffer: with TESTBED's 10 ms, pacat underran
        (zeros inserted) in 4 of 15 runs on two busy cores; 100 ms never did.
        """
        if isinstance(source, np.ndarray):
            fd, name = tempfile.mkstemp(suffix=".wav", dir=self.root)
            os.close(fd)
            sf.write(name, np.clip(source, -1.0, 1.0), sample_rate, subtype="PCM_16")
            source = name
        cmd = ["pacat", "-p", "-d", "micsink", f"--latency-msec={latency_ms}", "--file-format=wav", str(source)]
        proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if wait:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"pacat failed on {source}: {err.decode(errors='replace').strip()}")
        return proc

    def start_recording(self, source: str = "spk.monitor", rate: int = SPEAKER_RATE) -> Recorder:
        """Record what reaches the virtual speaker until ``.stop()``."""
        recorder = Recorder(self.env, source, rate)
        time.sleep(0.05)  # let the stream connect before the caller plays anything
        return recorder

    def record_speaker(self, seconds: float) -> np.ndarray:
        recorder = self.start_recording()
        time.sleep(seconds)
        return recorder.stop()


def reinitialize_portaudio() -> None:
    """Make PortAudio re-enumerate devices under the current environment (ALSA re-reads ALSA_CONFIG_PATH)."""
    import sounddevice as sd

    with contextlib.suppress(sd.PortAudioError):
        sd._terminate()
    sd._initialize()
