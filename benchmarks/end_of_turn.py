"""End of turn on real speech: the silence timer against the turn-completion model (Smart Turn v3.2) and the
pause's words (``turn.end_of_turn: words``).

The cases and the scoring are voiceos.turn.evaluate's (finished turns and mid-sentence pauses of 200-800 ms put
into the recordings of ../shared/data/speech); each strategy replays the same audio through the real endpointer,
its verdicts computed on this CPU, and the word check reads the transcripts of ``--engine``. Results:
benchmarks/README.md, "End of turn".

    .venv/bin/python benchmarks/end_of_turn.py [--engine moonshine] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from voiceos.asr import load_transcriber
from voiceos.bench import DEFAULT_SPEECH
from voiceos.config import AsrOptions, TurnOptions, VadOptions
from voiceos.turn import SilenceOnly, SmartTurnModel, TurnModel, WordsEndOfTurn
from voiceos.turn.evaluate import RememberedPredictions, build_cases, score, word_timer, words_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("whisper", "moonshine"), default="whisper", help="whose words")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    transcriber = load_transcriber(AsrOptions(engine=args.engine))
    finished, paused = build_cases(word_timer(transcriber), DEFAULT_SPEECH)
    words = words_of(transcriber)
    print(f"{len(finished)} finished turns, {len(paused)} mid-sentence pauses", file=sys.stderr)
    model, vad = RememberedPredictions(SmartTurnModel.load()), VadOptions()
    results = [score(SilenceOnly(), vad, finished, paused)]
    longer = dataclasses.replace(vad, hangover_ms=800)
    results.append({**score(SilenceOnly(), longer, finished, paused), "strategy": "silence only, 800 ms hangover"})
    for threshold in (0.5, 0.9, 0.98):
        for max_silence_ms in (500, 800):
            for text_check in (False, True):
                options = TurnOptions(threshold=threshold, max_silence_ms=max_silence_ms, text_check=text_check)
                results.append(score(TurnModel(model, options), vad, finished, paused, words))
    for check_ms in (150, 250):
        results.append(score(TurnModel(model, TurnOptions(check_ms=check_ms)), vad, finished, paused, words))
    for max_silence_ms in (800, 1000):
        options = TurnOptions(end_of_turn="words", max_silence_ms=max_silence_ms)
        results.append(score(WordsEndOfTurn(options), vad, finished, paused, words))
    print(
        "| strategy | end of speech -> turn over, p50 / p90 ms | ended by the model | cut inside a finished recording"
        " | false cut-ins at mid-sentence pauses (200/400/600/800 ms) |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        pauses = " ".join(r["false_cut_ins_by_pause_ms"].values())
        print(
            f"| {r['strategy']} | {r['end_delay_ms_p50']} / {r['end_delay_ms_p90']} | {r['ended_by_model']} | "
            f"{r['cut_inside_finished_recordings']} | {r['false_cut_in_rate']:.3f} ({pauses}) |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
