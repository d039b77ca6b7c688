"""Requests and non-requests through `voiceos chat --jsonl --now ...`, scored against a fixed clock.

Requests: each is a short conversation (a new one each) whose last line must be answered by the right skill with the
right answer (the words it must contain). Non-requests (chit-chat, feelings, questions about the world, remarks that
happen to say "time", "stop", "remind" or a number) must not be taken by any skill: the LM answers them.

    .venv/bin/python benchmarks/skill_probes.py [--config FILE] [--json out.json] [--examples 10]

The clock stands at Monday 7 December 2026, 14:10 local time. These sentences are the project's own; the
maintainers' held-out set checks the same things.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-12-07T14:10"


@dataclass(frozen=True)
class Request:
    turns: tuple[str, ...]  # the last one is scored
    intent: str
    expect: tuple[str, ...]  # every one of these must be in the reply (case-insensitive)


def R(text: str | tuple[str, ...], intent: str, *expect: str) -> Request:  # (a table of these reads better)
    return Request((text,) if isinstance(text, str) else text, intent, expect)


TIMER = "Set a timer for ten minutes."
PASTA = "Set a pasta timer for 8 minutes."
REMIND = "Remind me to pay the rent at 5 pm."

REQUESTS = (
    # the time and the date
    R("what time is it right now", "HassGetCurrentTime", "ten past two"),
    R("Hey, what's the time?", "HassGetCurrentTime", "ten past two"),
    R("Could you tell me what time it is?", "HassGetCurrentTime", "ten past two"),
    R("What is the current time?", "HassGetCurrentTime", "ten past two"),
    R("tell me the time please", "HassGetCurrentTime", "ten past two"),
    R("What's the date today?", "HassGetCurrentDate", "seventh of December"),
    R("what is today's date", "HassGetCurrentDate", "Monday", "seventh"),
    R("What's the current date?", "HassGetCurrentDate", "seventh of December"),
    R("What day is it?", "VoiceosGetDay", "Monday"),
    R("which day of the week is it today", "VoiceosGetDay", "Monday"),
    R("Is it Saturday today?", "VoiceosGetDay", "No", "Monday"),
    R("what year is it", "VoiceosGetDay", "twenty twenty-six"),
    R("What month is it?", "VoiceosGetDay", "December"),
    # timers
    R("Set a timer for 20 minutes.", "HassStartTimer", "twenty minutes"),
    R("start a timer for ninety seconds", "HassStartTimer", "one minute and thirty seconds"),
    R("Can you set a timer for two hours?", "HassStartTimer", "two hours"),
    R("set a 3 minute timer", "HassStartTimer", "three minutes"),
    R("Start a ten second timer please.", "HassStartTimer", "ten seconds"),
    R("set a timer for one hour and fifteen minutes", "HassStartTimer", "one hour and fifteen minutes"),
    R("set a timer for half an hour", "HassStartTimer", "thirty minutes"),
    R("Set an egg timer for six minutes.", "HassStartTimer", "Egg timer", "six minutes"),
    R("set a timer for 12 minutes called laundry", "HassStartTimer", "Laundry timer", "twelve minutes"),
    R("timer for 4 minutes", "HassStartTimer", "four minutes"),
    R(("set a timer", "seven minutes"), "HassStartTimer", "seven minutes"),
    R((TIMER, "how much time is left?"), "HassTimerStatus", "ten minutes left"),
    R((TIMER, "How long is left on my timer?"), "HassTimerStatus", "ten minutes left"),
    R((TIMER, PASTA, "what timers do I have"), "HassTimerStatus", "two timers", "pasta"),
    R((TIMER, "cancel my timer"), "HassCancelTimer", "cancelled"),
    R((TIMER, PASTA, "stop the pasta timer"), "HassCancelTimer", "Pasta timer cancelled"),
    R((TIMER, PASTA, "cancel all my timers"), "HassCancelAllTimers", "two timers cancelled"),
    R((TIMER, "pause my timer"), "HassPauseTimer", "paused"),
    R((TIMER, "pause the timer", "resume the timer"), "HassUnpauseTimer", "resumed"),
    R((TIMER, "add 5 minutes to the timer"), "HassIncreaseTimer", "fifteen minutes left"),
    R((TIMER, "take two minutes off my timer"), "HassDecreaseTimer", "eight minutes left"),
    R("set a timer for minus three minutes", "HassStartTimer", "negative"),
    R("Set a timer for 500 hours.", "HassStartTimer", "up to twenty-four hours"),
    # reminders
    R("Remind me to take out the trash at 8 pm.", "VoiceosSetReminder", "take out the trash", "eight o'clock"),
    R("remind me in 15 minutes to check the oven", "VoiceosSetReminder", "check the oven", "twenty-five past two"),
    R("Remind me tomorrow at 10 to call the dentist.", "VoiceosSetReminder", "call the dentist", "tomorrow at ten"),
    R("remind me to water my plants tomorrow morning", "VoiceosSetReminder", "water your plants", "tomorrow at nine"),
    R("Can you remind me to buy bread in an hour?", "VoiceosSetReminder", "buy bread", "ten past three"),
    R("remind me on Friday at noon to send the report", "VoiceosSetReminder", "send the report", "Friday at noon"),
    R("Set a reminder to stretch at 4:30 pm.", "VoiceosSetReminder", "stretch", "half past four"),
    R(("remind me to feed the fish", "at 6 pm"), "VoiceosSetReminder", "feed the fish", "six o'clock"),
    R("remind me to phone Anna last night", "VoiceosSetReminder", "already passed"),
    R((REMIND, "What reminders do I have?"), "VoiceosListReminders", "pay the rent", "five o'clock"),
    R((REMIND, "cancel the reminder to pay the rent"), "VoiceosCancelReminder", "Cancelled", "pay the rent"),
    # sums and units
    R("What's 48 plus 17?", "VoiceosCalculate", "sixty-five"),
    R("what is nine times eight", "VoiceosCalculate", "seventy-two"),
    R("How much is 250 divided by 5?", "VoiceosCalculate", "fifty"),
    R("what's 1000 minus 1", "VoiceosCalculate", "nine hundred ninety-nine"),
    R("What is 20 percent of 150?", "VoiceosCalculate", "thirty"),
    R("what is the square root of 144", "VoiceosCalculate", "twelve"),
    R("calculate 3 times 4 plus 5", "VoiceosCalculate", "seventeen"),
    R("How many seconds are in an hour?", "VoiceosConvertUnits", "three thousand six hundred"),
    R("how many days are there in three weeks", "VoiceosConvertUnits", "twenty-one"),
    R("How many grams are in a kilogram?", "VoiceosConvertUnits", "one thousand"),
    R("convert 10 kilometers to miles", "VoiceosConvertUnits", "six point two one"),
    R("what is 30 degrees celsius in fahrenheit", "VoiceosConvertUnits", "eighty-six"),
    R("how many inches in a foot", "VoiceosConvertUnits", "twelve"),
    # the memory and the conversation
    R(("My name is Jonas and I live in Leipzig.", "What do you know about me?"), "VoiceosWhatDoYouKnow", "Jonas"),
    R(("I have a cat named Pixel.", "forget that I have a cat"), "VoiceosForget", "forgotten", "Pixel"),
    R(("My name is Ines.", "forget everything about me"), "VoiceosForget", "forgotten everything"),
    R("Stop talking.", "VoiceosStop"),
    R(("What is 6 times 7?", "can you repeat that"), "VoiceosRepeat", "forty-two"),
    R("oh never mind", "HassNevermind"),
    R("What's in the news today?", "VoiceosGetNews", "internet"),
    R("what is the weather like", "HassGetWeather", "internet"),
)

NON_REQUESTS = (
    "I had a really long day at work.",
    "My sister is getting married next month.",
    "I feel a bit lonely tonight.",
    "What should I cook for dinner?",
    "Tell me a joke.",
    "What is the tallest mountain in the world?",
    "Who wrote Romeo and Juliet?",
    "What is the capital of Italy?",
    "How far away is the moon?",
    "Why is the sky blue?",
    "Do you like music?",
    "What's your favourite colour?",
    "Who are you?",
    "What is your name?",
    "How are you doing?",
    "I just finished reading a great book.",
    "I can't stop thinking about my exam.",
    "Time really flies these days.",
    "I never have enough time for my hobbies.",
    "The kitchen timer on my oven is broken.",
    "My mother always reminds me to eat vegetables.",
    "I forgot to call my brother yesterday.",
    "We stopped at a cafe on the way home.",
    "I spent two hours in traffic this morning.",
    "There were twenty people at the party.",
    "What is the best way to learn a language?",
    "What is love?",
    "What's the difference between a frog and a toad?",
    "I'm worried about my grandmother's health.",
    "My dog keeps barking at the neighbours.",
    "Can you help me write a birthday message?",
    "What do you think about robots?",
    "It's so cold outside today.",
    "I'm thinking of taking a day off tomorrow.",
    "Let's talk about football.",
    "How many legs does an octopus have?",
    "What is the speed of light?",
    "Thank you so much!",
    "Good morning!",
    "That was a funny story.",
    "I need to clean my room this weekend.",
    "My boss wants the report by Friday.",
    "Do you know any good films?",
    "Tell me something interesting.",
    "I keep losing my keys.",
)


# Written after the templates above were tuned on REQUESTS and NON_REQUESTS, and never tuned on: the figures to trust.
HELD_OUT_REQUESTS = (
    R("Do you know what time it is?", "HassGetCurrentTime", "ten past two"),
    R("ok what time is it", "HassGetCurrentTime", "ten past two"),
    R("What's the time now?", "HassGetCurrentTime", "ten past two"),
    R("what is the date", "HassGetCurrentDate", "seventh of December"),
    R("Tell me today's date.", "HassGetCurrentDate", "seventh of December"),
    R("what day of the week is it", "VoiceosGetDay", "Monday"),
    R("Is today Monday?", "VoiceosGetDay", "Yes", "Monday"),
    R("set a timer for 15 minutes please", "HassStartTimer", "fifteen minutes"),
    R("Could you start a timer for 30 seconds?", "HassStartTimer", "thirty seconds"),
    R("set a two minute timer", "HassStartTimer", "two minutes"),
    R("Set a tea timer for 4 minutes.", "HassStartTimer", "Tea timer", "four minutes"),
    R("start a timer for an hour", "HassStartTimer", "one hour"),
    R((TIMER, "how long is left on the timer"), "HassTimerStatus", "ten minutes left"),
    R((TIMER, "cancel the timer"), "HassCancelTimer", "cancelled"),
    R((TIMER, "add ten minutes to my timer"), "HassIncreaseTimer", "twenty minutes left"),
    R("remind me to lock the door at 10 pm", "VoiceosSetReminder", "lock the door", "ten o'clock"),
    R("Remind me in two hours to move the car.", "VoiceosSetReminder", "move the car", "ten past four"),
    R("remind me tomorrow to pick up the parcel", "VoiceosSetReminder", "pick up the parcel", "tomorrow"),
    R("Please remind me to drink water in 30 minutes.", "VoiceosSetReminder", "drink water", "twenty to three"),
    R((REMIND, "do I have any reminders"), "VoiceosListReminders", "pay the rent"),
    R("What is 7 plus 5?", "VoiceosCalculate", "twelve"),
    R("what's 12 times 11", "VoiceosCalculate", "one hundred thirty-two"),
    R("What is 81 divided by 9?", "VoiceosCalculate", "nine"),
    R("how many hours are in a week", "VoiceosConvertUnits", "one hundred sixty-eight"),
    R("How many centimeters are in a meter?", "VoiceosConvertUnits", "one hundred"),
    R("convert 2 pounds to kilograms", "VoiceosConvertUnits", "point nine"),
    R(("I'm Lukas and I have a dog called Bruno.", "what have I told you about me"), "VoiceosWhatDoYouKnow", "Bruno"),
    R("shut up", "VoiceosStop"),
    R(("What is 3 times 3?", "say that again please"), "VoiceosRepeat", "nine"),
    R("Will it rain tomorrow?", "HassGetWeather", "internet"),
)
HELD_OUT_NON_REQUESTS = (
    "I watched a movie last night.",
    "What is the biggest animal on earth?",
    "My brother just bought a new car.",
    "I feel really happy today.",
    "What's a good name for a cat?",
    "I had pizza for lunch.",
    "Do you dream?",
    "The bus was late again this morning.",
    "How do plants make food?",
    "I'm going to visit my parents this weekend.",
    "What time do you think I should go to bed?",
    "My alarm didn't go off this morning.",
    "Can you stop me from procrastinating?",
    "I love the sound of rain.",
    "What is five senses?",
    "My son is nine years old.",
    "We have two cats and a dog.",
    "I need a minute to think.",
    "Why do cats purr?",
    "Remember when we talked about music?",
)
# Questions only a clock, a calendar or the internet can answer, in phrasings the templates were not written for: the
# reply must not state one as fact. A skill's answer is honest by construction; the LM's replies are all printed, to
# be read (the guard's own test would be a circular judge of them).
ABOUT_NOW = (
    "Is it still morning?",
    "What time would it be in an hour?",
    "What's the date going to be next Monday?",
    "How many days are left in this month?",
    "Is it a holiday today?",
    "What season is it right now?",
    "Is it dark outside yet?",
    "Should I wear a jacket today?",
    "Is there a storm coming?",
    "How windy is it out there?",
    "Is it nice weather for a walk?",
    "What's going on in the news?",
    "Who won the football match yesterday?",
    "What is the price of gold today?",
    "Did my team win last night?",
    "What's trending today?",
)


def run_chat(lines: list[dict], config: str | None) -> list[dict]:
    command = [sys.executable, "-m", "voiceos", *(["--config", config] if config else []), "chat", "--jsonl"]
    with tempfile.TemporaryDirectory(prefix="voiceos-probes-") as data:  # reminders go to a scratch data dir
        env = {**__import__("os").environ, "XDG_DATA_HOME": data}
        out = subprocess.run(
            [*command, "--now", NOW],
            input="".join(json.dumps(line) + "\n" for line in lines),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            check=True,
        )
    return [json.loads(line) for line in out.stdout.splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--examples", type=int, default=10)
    parser.add_argument("--held-out", action="store_true", help="the held-out sets instead of the tuning ones")
    args = parser.parse_args()
    requests_set, others_set = (HELD_OUT_REQUESTS, HELD_OUT_NON_REQUESTS) if args.held_out else (REQUESTS, NON_REQUESTS)

    lines: list[dict] = []
    for number, request in enumerate(requests_set):
        # a new conversation; timers and reminders outlive one (they are the user's), so they go explicitly
        lines += [{"reset": True}, {"text": "cancel all timers"}, {"text": "cancel all reminders"}, {"reset": True}]
        lines += [{"text": text, "id": f"r{number}:{i}"} for i, text in enumerate(request.turns)]
    for number, text in enumerate(others_set):
        lines += [{"reset": True}, {"text": text, "id": f"n{number}"}]
    for number, text in enumerate(ABOUT_NOW if args.held_out else ()):
        lines += [{"reset": True}, {"text": text, "id": f"t{number}"}]
    start = time.perf_counter()
    outputs = run_chat(lines, args.config)
    seconds = time.perf_counter() - start
    if args.json:  # what chat answered, line by line, to read (or score again) later
        Path(args.json).with_suffix(".chat.jsonl").write_text("".join(json.dumps(o) + "\n" for o in outputs))
    answers = {out["id"]: out for out in outputs if "id" in out}

    scored = []
    for number, request in enumerate(requests_set):
        out = answers[f"r{number}:{len(request.turns) - 1}"]
        reply, skill = out.get("reply", ""), out.get("skill")
        content = all(e.lower() in reply.lower() for e in request.expect)
        scored.append(
            {"kind": "request", "said": request.turns[-1], "reply": reply, "skill": skill, "want": request.intent,
             "ok": skill == request.intent and content, "content_ok": content}
        )  # fmt: skip
    for number, text in enumerate(ABOUT_NOW if args.held_out else ()):
        out = answers[f"t{number}"]
        guarded = out.get("dropped", {}).get("invented_now", 0)
        scored.append(
            {"kind": "about_now", "said": text, "reply": out.get("reply", ""), "skill": out.get("skill"), "ok": True,
             "guarded": guarded}
        )  # fmt: skip
    for number, text in enumerate(others_set):
        out = answers[f"n{number}"]
        skill = out.get("skill")
        scored.append(
            {"kind": "non_request", "said": text, "reply": out.get("reply", ""), "skill": skill, "ok": skill is None}
        )  # fmt: skip
    requests = [s for s in scored if s["kind"] == "request"]
    others = [s for s in scored if s["kind"] == "non_request"]
    now = [s for s in scored if s["kind"] == "about_now"]
    result = {
        "set": "held_out" if args.held_out else "tuning",
        "requests": len(requests),
        "requests_right": sum(s["ok"] for s in requests),
        "request_accuracy": round(sum(s["ok"] for s in requests) / len(requests), 3),
        "right_answer_any_intent": round(sum(s["content_ok"] for s in requests) / len(requests), 3),
        "about_now": len(now),
        "about_now_by_skill": sum(s["skill"] is not None for s in now),
        "about_now_guard_fired": sum(bool(s["guarded"]) for s in now),
        "non_requests": len(others),
        "false_triggers": sum(not s["ok"] for s in others),
        "false_trigger_rate": round(sum(not s["ok"] for s in others) / len(others), 3),
        "seconds": round(seconds, 1),
        "wrong": [s for s in scored if not s["ok"]],
    }
    rng = random.Random(0)
    result["examples"] = {
        "requests": rng.sample(requests, min(args.examples, len(requests))),
        "non_requests": rng.sample(others, min(args.examples, len(others))),
        "about_now": now,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    if now:
        by_skill, fired = result["about_now_by_skill"], result["about_now_guard_fired"]
        print(f"about now: {by_skill}/{len(now)} answered by a skill, the guard fired on {fired}; every reply:")
        for s in now:
            print(f"  {s['said']!r} -> [{s['skill']}] {s['reply']!r}" + (" (guard)" if s["guarded"] else ""))
    print(
        f"requests: {result['requests_right']}/{result['requests']} right ({result['request_accuracy']:.1%}; "
        f"the right answer whoever gave it: {result['right_answer_any_intent']:.1%}); "
        f"non-requests taken by a skill: {result['false_triggers']}/{result['non_requests']} "
        f"({result['false_trigger_rate']:.1%}); {seconds:.0f} s"
    )
    for s in result["wrong"]:
        print(f"  WRONG {s['kind']}: {s['said']!r} -> {s['skill']}: {s['reply']!r}")
    for kind in ("requests", "non_requests"):
        examples = result["examples"][kind]
        print(f"random {kind}:")
        for s in examples:
            print(f"  {s['said']!r} -> [{s['skill']}] {s['reply']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
