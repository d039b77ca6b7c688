"""What the name gate costs while the room talks: the daemon (wake.mode: name) on a virtual microphone fed real
speech that never says its name, its CPU time per second of wall time, beside the same daemon idle in silence.

    .venv/bin/python benchmarks/wake_cpu.py [--config FILE] [--minutes 3]

Every utterance it hears is transcribed (the name can only be found in words) and then dropped; nothing is
answered, so no LM or voice runs. The figure says whether the gate keeps a core busy (it must not).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT.parent / "shared" / "data" / "speech"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def talk(seconds: float) -> np.ndarray:
    """Real sentences one after another, with the short pauses of people talking (0.3-1.2 s)."""
    from voiceos.audio.files import read_audio

    rows = []
    for folder in ("librivox_cmusphinx", "speechocean762_train"):
        with (SPEECH / folder / "manifest.csv").open(newline="") as file:
            rows += [(SPEECH / folder / r["path"]) for r in csv.DictReader(file) if len(r["transcript"].split()) >= 4]
    rng = random.Random(0)
    parts, total = [], 0.0
    while total < seconds:
        clip = read_audio(rng.choice(rows), 16000)
        pause = np.zeros(int(rng.uniform(0.3, 1.2) * 16000), np.float32)
        parts += [clip, pause]
        total += (len(clip) + len(pause)) / 16000
    return np.concatenate(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()

    from voiceos.daemon.client import EventFollower
    from voiceos.daemon.harness import VirtualAudioDaemon, config_with

    root = Path(tempfile.mkdtemp(prefix="voiceos-wake-cpu-"))
    config = config_with(args.config, {"wake": {"mode": "name"}}, root, "wake-name.yaml")
    rig = VirtualAudioDaemon(root, config, answer_everything=False)
    try:
        rig.require_listening(300.0, "wake_cpu")
        events = EventFollower(rig.socket)
        time.sleep(5.0)
        idle_cpu, idle_start = cpu_seconds(rig.pid), time.monotonic()
        time.sleep(30.0)
        idle = (cpu_seconds(rig.pid) - idle_cpu) / (time.monotonic() - idle_start)
        sound = talk(args.minutes * 60)
        mark = events.mark()
        busy_cpu, busy_start = cpu_seconds(rig.pid), time.monotonic()
        rig.server.speak_into_mic(sound)
        time.sleep(2.0)
        busy = (cpu_seconds(rig.pid) - busy_cpu) / (time.monotonic() - busy_start)
        names = [e["event"] for e in events.since(mark)]
        result = {
            "talk_s": round(len(sound) / 16000, 1),
            "utterances_ignored": names.count("ignored"),
            "replies": names.count("speaking_started"),
            "daemon_cpu_per_wall_s_idle": round(idle, 3),
            "daemon_cpu_per_wall_s_while_the_room_talks": round(busy, 3),
            "cores": os.cpu_count(),
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        rig.stop(10.0)


if __name__ == "__main__":
    sys.exit(main())
