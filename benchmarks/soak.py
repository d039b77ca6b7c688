"""Soak: the real daemon on virtual audio devices, fed real speech and silence for MINUTES (default 30).

Prints the figures as JSON on stdout and a short summary on stderr; exits 1 if a criterion of issue #7 fails
(every utterance answered, RSS growth under 10% after warm-up, few audio over/underflows, no fd or thread leak,
the same daemon process throughout, no errors in its log) and says which.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--silence 3] [--speech DIR] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from voiceos.soak import Criteria, failures, run_soak, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to feed turns (default 30)")
    parser.add_argument("--silence", type=float, default=3.0, help="seconds of silence after each reply")
    parser.add_argument("--warmup", type=int, default=3, help="turns before the baseline sample (default 3)")
    parser.add_argument("--speech", metavar="DIR", help="a folder with manifest.csv (default: the LibriVox set)")
    parser.add_argument("--config", metavar="FILE", help="the daemon's config (default: the shipped one)")
    parser.add_argument(
        "--max-xruns-per-minute",
        type=float,
        default=Criteria.max_audio_xruns_per_minute,
        help="audio faults allowed per minute (input overflows and drops, output underflows during replies)",
    )
    parser.add_argument("--turns", action="store_true", help="keep every turn in the JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-turn progress on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")
    result = run_soak(
        args.minutes,
        silence_s=args.silence,
        warmup_turns=args.warmup,
        speech_dir=Path(args.speech) if args.speech else None,
        config_path=args.config,
    )
    if not args.turns:
        result.pop("turns")
    problems = failures(result, Criteria(max_audio_xruns_per_minute=args.max_xruns_per_minute))
    result["failures"] = problems
    print(json.dumps(result, indent=2))
    print(summary(result), file=sys.stderr)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("soak: " + ("FAILED" if problems else "passed"), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
