"""The ``voiceos`` command: parse arguments, build the config, call the pipeline, print JSON or one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from voiceos import __version__
from voiceos.asr import ENGINES
from voiceos.audio.rate import SAMPLE_RATE
from voiceos.config import Config, load_config
from voiceos.errors import ConfigError, VoiceosError

log = logging.getLogger("voiceos")

FORGET_DESCRIPTION = (
    "Erase what voiceos stores about you: the running daemon's conversation memory, your reminders, saved "
    "transcripts (privacy.save_transcripts) and the last reply's audio. The model cache (~/.cache/voiceos) holds "
    "nothing personal and is kept."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voiceos", description="A private voice assistant that runs on this machine.")
    parser.add_argument("--version", action="version", version=f"voiceos {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $VOICEOS_CONFIG, ~/.config/voiceos/config.yaml, then the project's config.yaml)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    say = sub.add_parser("say", help="answer TEXT (what the user said) in speech")
    say.add_argument("text", nargs="+", metavar="TEXT")
    say.add_argument("--json", action="store_true", help="print one JSON object")
    say.add_argument("--out", metavar="FILE.wav", help="also write the spoken reply to this WAV file")
    say.add_argument("--no-play", action="store_true", help="do not play the reply")
    say.add_argument(
        "--local",
        action="store_true",
        help="run in this process even when a daemon is running (--out and --no-play imply it)",
    )

    listen = sub.add_parser("listen", help="treat an audio file as microphone input and answer it")
    listen.add_argument("file", metavar="FILE")
    listen.add_argument("--json", action="store_true", help="print one JSON object")
    listen.add_argument("--out", metavar="FILE.wav", help="also write the spoken reply to this WAV file")
    listen.add_argument("--no-play", action="store_true", help="do not play the reply")

    transcribe = sub.add_parser("transcribe", help="transcribe audio files (asr.engine: Whisper or Moonshine)")
    transcribe.add_argument("files", nargs="+", metavar="FILE")
    transcribe.add_argument("--engine", choices=ENGINES, help="the ASR engine (default: asr.engine)")
    transcribe.add_argument("--jsonl", action="store_true", help="one JSON object per line")

    devices = sub.add_parser("devices", help="list audio devices as sounddevice sees them")
    devices.add_argument("--json", action="store_true")

    doctor = sub.add_parser("doctor", help="check models, devices, CUDA and versions")
    doctor.add_argument("--json", action="store_true")

    run = sub.add_parser("run", help="run the assistant: listen on the microphone and answer on the speaker")
    run.add_argument("--socket", metavar="PATH", help="control socket (default $XDG_RUNTIME_DIR/voiceos/control.sock)")
    for name, text in (
        ("status", "what the running daemon is doing (state, devices, models, uptime)"),
        ("events", "follow the running daemon's events, one JSON object per line"),
        ("interrupt", "stop what the running daemon is saying"),
        ("reset", "clear the running daemon's conversation memory"),
        ("mute", "close the running daemon's microphone: it hears nothing, its name neither"),
        ("unmute", "open the running daemon's microphone again"),
    ):
        client_cmd = sub.add_parser(name, help=text)
        client_cmd.add_argument("--socket", metavar="PATH", help="control socket of the daemon")

    chat = sub.add_parser("chat", help="a text conversation (same persona, memory and LM as the daemon)")
    chat.add_argument(
        "--jsonl",
        action="store_true",
        help='stdin: {"text": ...} or {"reset": true} a line; '
        "stdout: one JSON object per line (reply, user_emotion, reply_emotion, timings_ms)",
    )
    chat.add_argument("--speak", action="store_true", help="also speak each reply")
    chat.add_argument(
        "--now",
        metavar="TIME",
        help="pretend it is this local time, e.g. 2026-12-07T14:10 (the clock stands still: scripts and probes)",
    )

    memory = sub.add_parser("memory", help="list what voiceos remembers about you (the daemon's, else the saved)")
    memory.add_argument("--remove", type=int, metavar="N", help="forget fact N (as listed)")
    memory.add_argument("--json", action="store_true")
    memory.add_argument("--socket", metavar="PATH", help="control socket of the daemon")

    reminders = sub.add_parser("reminders", help="list your reminders (the daemon's, else the saved ones)")
    reminders.add_argument("--cancel", type=int, metavar="N", help="cancel reminder N (as listed)")
    reminders.add_argument("--json", action="store_true")
    reminders.add_argument("--socket", metavar="PATH", help="control socket of the daemon")

    forget_help = "erase what voiceos stores about you (memory, reminders, transcripts, reply audio); keeps models"
    forget = sub.add_parser("forget", help=forget_help, description=FORGET_DESCRIPTION)
    forget.add_argument("--socket", metavar="PATH", help="control socket of the daemon")

    bench = sub.add_parser("bench", help="measure end of speech -> first reply sound on virtual audio devices")
    bench.add_argument("--utterances", type=int, default=5, help="how many recordings to speak (default 5)")
    bench.add_argument("--speech", metavar="DIR", help="a folder with manifest.csv (default: the shared LibriVox set)")
    bench.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="skip the sequential-pipeline run and the LM decoding speed (faster)",
    )
    bench.add_argument("--json", action="store_true", help="print the whole result as JSON (default: a summary)")

    emotion = sub.add_parser("emotion", help="classify the emotion of text lines read on stdin (one JSON line each)")
    emotion.add_argument("--jsonl", action="store_true", help='input lines are {"text": ..., "context": [...]} objects')
    emotion.add_argument("--batch-size", type=int, default=32)

    train = sub.add_parser(
        "train",
        help="train the emotion head, or `train dialogue`: fine-tune the LM (options: --help after either)",
        add_help=False,
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)

    wyoming = sub.add_parser(
        "wyoming",
        help="serve ASR, TTS and the conversation to Home Assistant (Wyoming protocol)",
        description="Serve the loaded models over Wyoming, Home Assistant's voice protocol. Wyoming has no "
        "authentication: a LAN address lets everyone on the LAN use the models and the conversation.",
    )
    wyoming.add_argument(
        "--uri",
        default="tcp://127.0.0.1:10700",
        help="where to listen: tcp://HOST:PORT or unix://PATH (default tcp://127.0.0.1:10700, this machine only)",
    )

    install = sub.add_parser("install-service", help="install the systemd user unit for this installation")
    install.add_argument("--enable", action="store_true", help="also daemon-reload and enable --now it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":  # everything after `train` belongs to the trainer's own parser
        args.train_args = [*args.train_args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    try:
        config = load_config(args.config) if args.command != "forget" else Config()  # forgetting needs no config
        return COMMANDS[args.command](args, config)
    except ConfigError as err:
        print(f"voiceos: error: {err}", file=sys.stderr)
        return 78 if args.command == "run" else 1  # EX_CONFIG: the unit does not restart a broken config
    except VoiceosError as err:
        print(f"voiceos: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("voiceos: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: still one line, with the way to see more
        if args.verbose:
            log.exception("internal error")
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"voiceos: internal error: {type(err).__name__}: {first} (run with -v for details)", file=sys.stderr)
        return 70


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- commands ----------------------------------------------------------------------------------------------------------
def cmd_say(args: argparse.Namespace, config: Config) -> int:
    from voiceos.pipeline import Pipeline, clean_text

    text = clean_text(" ".join(args.text), config.limits.max_text_chars)  # fail before loading any model
    if not (args.local or args.out or args.no_play):
        data = _ask_daemon("say", text=text)
        if data is not None:
            _print_daemon_turn(data, args.json)
            return 0
    pipeline = Pipeline.load(config, stages=("lm", "tts"))
    assert pipeline.tts is not None
    with _Speaker(config, pipeline.tts.sample_rate, play=not args.no_play) as speaker:
        turn = pipeline.reply(text, on_audio=speaker.write)
    turn.audio_path = _save_reply(turn, args.out, speaker.played)
    _print_turn(turn.as_json(), args.json, speaker)
    return 0


def cmd_listen(args: argparse.Namespace, config: Config) -> int:
    from voiceos.audio.files import read_audio
    from voiceos.pipeline import Pipeline

    samples = read_audio(args.file, SAMPLE_RATE, max_seconds=config.limits.max_audio_s)  # fail before loading models
    pipeline = Pipeline.load(config, stages=("asr", "lm", "tts"))
    assert pipeline.tts is not None
    with _Speaker(config, pipeline.tts.sample_rate, play=not args.no_play) as speaker:
        result = pipeline.listen_samples(samples, args.file, on_audio=speaker.write)
    result.turn.audio_path = _save_reply(result.turn, args.out, speaker.played)
    _print_turn(result.as_json(), args.json, speaker)
    return 0


def cmd_transcribe(args: argparse.Namespace, config: Config) -> int:
    from voiceos.asr import load_transcriber
    from voiceos.audio.files import read_audio
    from voiceos.models import plan_for

    if args.engine:
        try:
            config = dataclasses.replace(config, asr=dataclasses.replace(config.asr, engine=args.engine))
        except ValueError as err:  # the options refuse the pair (moonshine and another language than English)
            raise ConfigError(f"--engine {args.engine}: {err}") from None
    transcriber = load_transcriber(config.asr, plan_for(config))
    log.info("transcribing with %s", transcriber.describe())
    failures = 0
    for path in args.files:
        try:
            samples = read_audio(path, SAMPLE_RATE, max_seconds=config.limits.max_audio_s)
        except VoiceosError as err:  # one bad file must not lose the others
            failures += 1
            print(f"voiceos: error: {err}", file=sys.stderr)
            if args.jsonl:
                print(json.dumps({"path": path, "error": str(err)}), flush=True)
            continue
        transcript = transcriber.transcribe(samples)
        if args.jsonl:
            record = {
                "path": path,
                "text": transcript.text,
                "seconds": round(transcript.duration_s, 3),
                "engine": transcriber.engine,
            }
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{path}: {transcript.text}", flush=True)
    return 1 if failures else 0


def cmd_devices(args: argparse.Namespace, config: Config) -> int:
    from voiceos.audio.playback import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps(devices, indent=2))
    elif not devices:
        print("no audio devices found (is a sound server running? see 'voiceos doctor')")
    else:
        for d in devices:
            marks = ("<" if d["is_default_input"] else " ") + (">" if d["is_default_output"] else " ")
            print(
                f"{marks} {d['index']:3d} {d['name']} "
                f"({d['max_input_channels']} in, {d['max_output_channels']} out, {d['default_samplerate']:.0f} Hz)"
            )
    return 0


def cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from voiceos.doctor import run_checks

    checks = run_checks(config)
    failed = [c for c in checks if c.required and not c.ok]
    if args.json:
        print(json.dumps({"ok": not failed, "checks": [c.as_json() for c in checks]}, indent=2))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name}: {c.detail}")
        if failed:
            print(
                f"voiceos: error: {len(failed)} required check(s) failed: {', '.join(c.name for c in failed)}",
                file=sys.stderr,
            )
    return 1 if failed else 0


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from voiceos.daemon.main import run

    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
    return run(config, socket_path=args.socket)


def cmd_client(args: argparse.Namespace, config: Config) -> int:
    """status, events, interrupt, reset: thin clients of the running daemon."""
    from voiceos.daemon.client import ControlClient

    with ControlClient(args.socket, timeout=60) as client:
        if args.command == "events":
            with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
                for event in client.iter_events():
                    print(json.dumps(event, ensure_ascii=False), flush=True)
            return 0
        print(json.dumps(client.request(args.command), indent=2, ensure_ascii=False))
    return 0


def cmd_chat(args: argparse.Namespace, config: Config) -> int:
    from voiceos.chat import fixed_clock, run_interactive, run_jsonl
    from voiceos.pipeline import Pipeline

    clock = fixed_clock(args.now) if args.now else None  # a bad time fails before any model loads
    pipeline = Pipeline.load(config, stages=("lm", "tts") if args.speak else ("lm",))
    pipeline.keep_alarms(clock)  # chat lives on: its timers ring in the terminal
    rate = pipeline.tts.sample_rate if pipeline.tts is not None else 0
    with _Speaker(config, rate, play=args.speak) as speaker:
        on_audio = speaker.write if args.speak else None
        if args.jsonl:
            return run_jsonl(pipeline, sys.stdin, sys.stdout, on_audio)
        return run_interactive(pipeline, on_audio)


def cmd_wyoming(args: argparse.Namespace, config: Config) -> int:
    from voiceos.pipeline import Pipeline
    from voiceos.wyoming import check_uri, serve

    uri = check_uri(args.uri)  # fail before loading any model
    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)
    return serve(Pipeline.load(config), uri)


def cmd_memory(args: argparse.Namespace, config: Config) -> int:
    """The running daemon's facts (it holds them even when they are not saved), else those saved on disk."""
    from voiceos.memory import MemoryStore, memory_path
    from voiceos.memory.store import memory_command

    fields = {"remove": args.remove} if args.remove is not None else {}
    data, by_daemon = _daemon_else_here(
        args.socket, "memory", fields, lambda: memory_command(MemoryStore(memory_path()), args.remove)
    )
    where = "the running daemon" if by_daemon else str(memory_path())
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    if data.get("removed"):
        print(f"forgot: {data['removed']['text']}")
    facts = data.get("facts") or []
    kept = "kept across restarts" if data.get("kept_across_restarts") else "for this conversation only"
    print(f"what voiceos remembers about you ({where}, {kept}):" if facts else f"nothing remembered ({where})")
    for number, fact in enumerate(facts, 1):
        print(f"  {number}. {fact['text']}")
    return 0


def cmd_reminders(args: argparse.Namespace, config: Config) -> int:
    """The running daemon's reminders, else those saved on disk (the same file)."""
    from voiceos.alarms import ReminderBook, reminders_path
    from voiceos.alarms.reminders import reminders_command
    from voiceos.clock import SystemClock

    fields = {"cancel": args.cancel} if args.cancel is not None else {}
    data, _ = _daemon_else_here(
        args.socket,
        "reminders",
        fields,
        lambda: reminders_command(ReminderBook(SystemClock(), reminders_path()), args.cancel),
    )
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
        return 0
    if data.get("cancelled"):
        print(f"cancelled: {data['cancelled']['task']}")
    reminders = data.get("reminders") or []
    print("your reminders:" if reminders else "no reminders")
    for number, reminder in enumerate(reminders, 1):
        print(f"  {number}. {reminder['due'].replace('T', ' ')[:16]}  {reminder['task']}")
    return 0


def _daemon_else_here(socket: str | None, cmd: str, fields: dict, here: Callable[[], dict]) -> tuple[dict, bool]:
    """The running daemon's answer to ``cmd`` (it holds the live state), else ``here()`` from the files on disk;
    True when the daemon answered."""
    from voiceos.daemon.client import ControlClient, DaemonUnavailable

    try:
        with ControlClient(socket, timeout=60) as client:
            return client.request(cmd, **fields), True
    except DaemonUnavailable:
        return here(), False


def cmd_forget(args: argparse.Namespace, config: Config) -> int:
    from voiceos.forget import forget_command

    return forget_command(args.socket)


def cmd_bench(args: argparse.Namespace, config: Config) -> int:
    from voiceos.bench import main as bench_main

    if args.utterances < 1:
        raise VoiceosError("--utterances must be at least 1")
    return bench_main(
        args.config or os.environ.get("VOICEOS_CONFIG"), args.utterances, args.speech, args.baseline, as_json=args.json
    )


def cmd_emotion(args: argparse.Namespace, config: Config) -> int:
    from voiceos.dialogue.lm import DialogueLM
    from voiceos.emotion.classifier import EmotionClassifier
    from voiceos.models import plan_for

    inputs: list[tuple[int, str, list[str]]] = []
    results: dict[int, dict] = {}
    failures = 0
    lines = sys.stdin.read().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            text, context = _emotion_input(line, args.jsonl, config.limits.max_text_chars)
        except VoiceosError as err:
            failures += 1
            print(f"voiceos: error: line {number}: {err}", file=sys.stderr)
            results[number] = {"error": f"line {number}: {err}"}
            continue
        inputs.append((number, text, context))
    if inputs:
        plan = plan_for(config)
        classifier = EmotionClassifier.load(config.emotion.checkpoint, DialogueLM.load(config.dialogue, plan))
        found = classifier.classify([t for _, t, _ in inputs], [c for _, _, c in inputs], batch_size=args.batch_size)
        for (number, _, _), result in zip(inputs, found, strict=True):
            results[number] = {"label": result.label, "scores": {k: round(v, 4) for k, v in result.scores.items()}}
    for number in range(1, len(lines) + 1):  # in input order; a bad line keeps its place
        print(json.dumps(results[number], ensure_ascii=False), flush=True)
    return 1 if failures else 0


def _emotion_input(line: str, as_json: bool, max_chars: int) -> tuple[str, list[str]]:
    from voiceos.pipeline import clean_text

    if not as_json:
        return clean_text(line, max_chars), []
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise VoiceosError(f"not JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise VoiceosError('expected an object with a "text" string')
    context = data.get("context", [])
    if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
        raise VoiceosError('"context" must be a list of strings (earlier turns, oldest first)')
    return clean_text(data["text"], max_chars), context


def cmd_train(args: argparse.Namespace, config: Config) -> int:
    """``voiceos train dialogue ...`` fine-tunes the LM; ``voiceos train [emotion] ...`` the emotion head."""
    rest = list(args.train_args)
    if rest[:1] == ["dialogue"]:
        from voiceos.dialogue.train import main as dialogue_main

        return dialogue_main(rest[1:], config)
    from voiceos.emotion.train import main as train_main

    return train_main(rest[1:] if rest[:1] == ["emotion"] else rest)


def cmd_install_service(args: argparse.Namespace, config: Config) -> int:
    from voiceos.daemon.service import install_service, next_steps
    from voiceos.selfcheck import check_libraries

    # The unit runs this interpreter: one whose libraries do not load together would fail at every start.
    failures = check_libraries()
    if failures:
        raise VoiceosError(f"not installing the service: {failures[0].message()}")
    path = install_service(enable=args.enable, config=config)
    print(next_steps(path, enabled=args.enable))
    return 0


COMMANDS = {
    "run": cmd_run,
    "status": cmd_client,
    "events": cmd_client,
    "interrupt": cmd_client,
    "reset": cmd_client,
    "mute": cmd_client,
    "unmute": cmd_client,
    "forget": cmd_forget,
    "chat": cmd_chat,
    "wyoming": cmd_wyoming,
    "memory": cmd_memory,
    "reminders": cmd_reminders,
    "install-service": cmd_install_service,
    "bench": cmd_bench,
    "emotion": cmd_emotion,
    "train": cmd_train,
    "say": cmd_say,
    "listen": cmd_listen,
    "transcribe": cmd_transcribe,
    "devices": cmd_devices,
    "doctor": cmd_doctor,
}


# -- audio out -------------------------------------------------------------------------------------------------------
class _Speaker:
    """Plays reply chunks as they are synthesized, or records that no device could play them."""

    def __init__(self, config: Config, sample_rate: int, play: bool) -> None:
        self.played = False
        self.note = ""
        self._player = None
        if not play:
            return
        from voiceos.audio.playback import ChunkPlayer, have_output_device, resolve_device

        if not have_output_device():
            self.note = "no audio output device"
            return
        try:
            device = resolve_device(config.audio.output_device, "output")
            self._player = ChunkPlayer(sample_rate, device=device, latency=config.audio.output_latency_ms / 1000)
        except VoiceosError as err:
            self.note = str(err)
            log.warning("cannot play the reply: %s", err)

    def write(self, chunk) -> None:
        if self._player is not None:
            self._player.write(chunk)

    def __enter__(self) -> _Speaker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._player is None:
            return
        try:
            if exc[0] is None:
                self._player.drain()
                self.played = True
        finally:
            self._player.close()


def _ask_daemon(cmd: str, **fields) -> dict | None:
    """The daemon's answer, or None when no daemon is running (the caller then works in-process)."""
    from voiceos.daemon.client import ControlClient, DaemonUnavailable

    try:
        with ControlClient(timeout=600) as client:
            return client.request(cmd, **fields)
    except DaemonUnavailable:
        return None


def _print_daemon_turn(data: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    print(f"voiceos: {data['reply']}")
    where = "spoken by the running daemon" if data["audio"].get("played") else "not played (the daemon has no speaker)"
    print(f"[{data['audio']['seconds']:.1f} s of speech, {where}]")


def _save_reply(turn, out: str | None, played: bool) -> str | None:
    """Write the reply where asked; with nothing to play it on, write it where the user can find it."""
    from voiceos.audio.files import write_wav
    from voiceos.privacy import last_reply_path

    path = Path(out) if out else (None if played else last_reply_path())
    if path is None:
        return None
    write_wav(path, turn.audio, turn.sample_rate)
    return str(path)


def _print_turn(data: dict, as_json: bool, speaker: _Speaker) -> None:
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    if "transcript" in data:
        print(f"you said: {data['transcript']}")
    print(f"voiceos: {data['reply']}")
    audio = data["audio"]
    where = "played" if speaker.played else "not played"
    if speaker.note:
        where += f" ({speaker.note})"
    saved = f"; saved to {audio['path']}" if audio["path"] else ""
    print(f"[{audio['seconds']:.1f} s of speech, {where}{saved}]")
