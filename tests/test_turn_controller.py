"""The daemon's turn policy as pure logic (voiceos.daemon.turn_controller): VAD events in, actions out. No model, no
event loop, no device: these run in milliseconds. The same policy runs with the real models in test_daemon*.py."""

from __future__ import annotations

import numpy as np
import pytest

from voiceos.daemon.turn_controller import (
    CheckEndOfTurn,
    CommitReply,
    DropSpeculation,
    HoldReply,
    Interrupted,
    Phase,
    Publish,
    Speculate,
    StartReply,
    TranscribePartial,
    TurnController,
    TurnPolicy,
)
from voiceos.daemon.turn_state import Turn
from voiceos.events import SpeechEndedEvent, SpeechStartedEvent
from voiceos.vad import (
    SpeechDiscarded,
    SpeechEnded,
    SpeechGrowing,
    SpeechPaused,
    SpeechStarted,
    TurnCheck,
    Utterance,
)


def utterance(start_s: float, end_s: float, voiced_s: float | None = None) -> Utterance:
    samples = np.zeros(int((end_s - start_s) * 16_000), np.float32)
    return Utterance(start_s, end_s, samples, voiced_s=end_s - start_s if voiced_s is None else voiced_s)


def kinds(actions) -> list[str]:
    return [type(action).__name__ for action in actions]


def started_reply(actions) -> Turn:
    (start,) = [a for a in actions if isinstance(a, StartReply)]
    return start.turn


@pytest.fixture
def controller() -> TurnController:
    return TurnController(TurnPolicy(barge_in=True, barge_in_min_ms=300, speculate_reply=True))


def test_an_utterance_that_ends_starts_a_reply_to_it(controller):
    (published,) = controller.on_vad_event(SpeechStarted(1.0))
    assert isinstance(published, Publish) and isinstance(published.event, SpeechStartedEvent)
    assert published.event.stream_s == 1.0
    utt = utterance(1.0, 2.5)
    actions = controller.on_vad_event(SpeechEnded(utt))
    assert kinds(actions) == ["Publish", "StartReply"]
    assert isinstance(actions[0].event, SpeechEndedEvent) and actions[0].event.stream_s == 2.5
    turn = started_reply(actions)
    assert actions[1] == StartReply(turn, utt) and turn.source == "microphone"
    assert controller.turn is turn and controller.phase is Phase.THINKING
    controller.speaking_started(turn, 0.0)
    assert controller.phase is Phase.SPEAKING
    assert controller.ended(turn) and controller.phase is Phase.LISTENING


def test_a_pause_transcribes_speculatively_and_holds_a_reply_that_the_same_end_commits(controller):
    controller.on_vad_event(SpeechStarted(1.0))
    paused = utterance(1.0, 2.0)
    actions = controller.on_vad_event(SpeechPaused(paused))
    assert kinds(actions) == ["Speculate", "HoldReply"] and actions[0] == Speculate(paused)
    held = actions[1].turn
    assert held.is_held and controller.phase is Phase.HOLDING
    actions = controller.on_vad_event(SpeechEnded(utterance(1.0, 2.0)))  # the turn ends at that pause
    assert kinds(actions) == ["Publish", "CommitReply"]
    assert actions[1] == CommitReply(held, paused, current=True)
    assert controller.turn is held and controller.held is None


def test_going_on_after_a_pause_drops_the_held_reply_without_trace(controller):
    controller.on_vad_event(SpeechStarted(1.0))
    held = controller.on_vad_event(SpeechPaused(utterance(1.0, 2.0)))[1].turn
    actions = controller.on_vad_event(SpeechEnded(utterance(1.0, 3.2)))  # the user went on: other samples
    assert held.cancel.is_set() and not held.interrupted  # dropped, not interrupted: it never played
    assert kinds(actions) == ["Publish", "StartReply"] and started_reply(actions) is not held
    assert controller.transcribed(held, "what I said so") is None  # its transcript leaves no trace ...
    assert controller.carry_over == ""  # ... not even carried over


def test_a_held_reply_that_found_no_words_commits_its_events_but_is_no_turn(controller):
    held = controller.on_vad_event(SpeechPaused(utterance(1.0, 2.0)))[1].turn
    assert controller.ended(held) is False  # its task ended on its own (nothing intelligible)
    actions = controller.on_vad_event(SpeechEnded(utterance(1.0, 2.0)))
    assert actions[-1] == CommitReply(held, utterance(1.0, 2.0), current=False)
    assert controller.turn is None and controller.phase is Phase.LISTENING


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        (TurnPolicy(speculate_reply=False), "speculate_reply off"),
        (TurnPolicy(sequential=True), "the sequential baseline"),
    ],
)
def test_no_held_reply_when_the_policy_says_so(policy, why):
    controller = TurnController(policy)
    assert kinds(controller.on_vad_event(SpeechPaused(utterance(1.0, 2.0)))) == ["Speculate"], why


def test_no_held_reply_while_a_turn_runs_or_words_wait_to_be_carried_over(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    assert kinds(controller.on_vad_event(SpeechPaused(utterance(1.5, 2.0)))) == ["Speculate"]  # a turn runs
    controller.ended(turn)
    controller.carry_over = "so I was thinking"
    assert kinds(controller.on_vad_event(SpeechPaused(utterance(3.0, 4.0)))) == ["Speculate"]


def test_speech_over_a_turn_still_thinking_cuts_it_and_its_words_join_the_next_utterance(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    turn.user_text = "so I was thinking"  # transcribed; nothing played yet
    actions = controller.on_vad_event(SpeechStarted(1.6))
    assert actions[1:] == [Interrupted(turn, "the user is still talking")]
    assert turn.cancel.is_set() and turn.interrupted_by == "the user is still talking"
    assert controller.carry_over == "so I was thinking"
    nxt = started_reply(controller.on_vad_event(SpeechEnded(utterance(1.6, 3.0))))
    assert controller.transcribed(nxt, "about a trip to Lisbon") == "so I was thinking about a trip to Lisbon"
    assert controller.carry_over == ""


def test_words_of_a_turn_cut_while_still_being_transcribed_carry_over_when_they_arrive(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.on_vad_event(SpeechStarted(1.6))  # cut before its transcript came
    assert controller.transcribed(turn, "so I was thinking") is None
    assert controller.carry_over == "so I was thinking"


def test_a_blip_after_the_cut_answers_the_cut_turns_words_after_all(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.on_vad_event(SpeechStarted(1.6))
    controller.ended(turn)
    actions = controller.on_vad_event(SpeechDiscarded(1.6, 1.7))  # it was a cough
    (start,) = actions
    assert isinstance(start, StartReply) and start.utterance is None and start.resumes is turn
    assert controller.cut_by_speech is None


def test_speech_over_a_reply_interrupts_it_once_the_user_has_said_enough(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.speaking_started(turn, 0.0)
    assert controller.on_vad_event(SpeechStarted(2.0))[1:] == []  # not yet
    assert controller.on_voiced(0.2) == []  # under barge_in_min_ms (300)
    assert controller.on_voiced(0.35) == [Interrupted(turn, "barge-in")]
    assert controller.on_voiced(0.5) == []  # once per utterance
    assert turn.interrupted_by == "barge-in" and controller.carry_over == ""  # it spoke: nothing carries over


def test_voice_over_a_reply_too_short_to_interrupt_is_dropped_whole(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.speaking_started(turn, 0.0)
    controller.on_vad_event(SpeechStarted(2.0))
    controller.on_voiced(0.1)
    assert controller.on_vad_event(SpeechEnded(utterance(2.0, 2.3, voiced_s=0.1))) == [DropSpeculation()]
    assert controller.turn is turn and not turn.cancel.is_set()  # the reply goes on


def test_a_reply_counts_only_the_voice_the_echo_stage_judged_the_users_own(controller):
    """A cough over a loud echo: webrtcvad hears 0.5 s of voice (the canceller's residual after it), the echo stage
    0.2 s of the user's own. The reply goes on, and the sound is dropped whole."""
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.speaking_started(turn, 0.0)
    controller.on_vad_event(SpeechStarted(2.0))
    controller.users_voice_s = 0.2
    assert controller.on_voiced(0.5) == []
    assert controller.on_vad_event(SpeechEnded(utterance(2.0, 2.6, voiced_s=0.5))) == [DropSpeculation()]
    assert not turn.cancel.is_set()


def test_an_alarm_notice_is_stopped_by_any_short_voice():
    controller = TurnController(TurnPolicy(barge_in_min_ms=500))
    alarm = Turn("Your five minute timer is done.", "alarm")
    controller.start(alarm)
    controller.speaking_started(alarm, 0.0)
    controller.on_vad_event(SpeechStarted(2.0))
    controller.users_voice_s = 0.0  # (a notice's own minimum, and any voice: the user heard it and answers)
    assert controller.on_voiced(0.3) == [Interrupted(alarm, "barge-in")]


def test_without_barge_in_speech_over_a_reply_does_not_stop_it():
    controller = TurnController(TurnPolicy(barge_in=False))
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    controller.speaking_started(turn, 0.0)
    controller.on_vad_event(SpeechStarted(2.0))
    assert controller.on_voiced(5.0) == [] and not turn.cancel.is_set()


def test_an_utterance_ending_while_a_say_reply_thinks_cuts_it_and_is_remembered_as_its_cutter(controller):
    say = Turn("Tell me a story.", "say")
    controller.start(say)
    actions = controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0)))
    cutter = started_reply(actions)
    assert Interrupted(say, "a new utterance") in actions and say.cut_by is cutter
    assert controller.carry_over == ""  # a say turn's words are not the user's speech
    assert not controller.may_answer_again(say)  # the cutter runs
    controller.ended(cutter)
    assert controller.may_answer_again(say)


def test_a_turn_check_asks_the_end_of_turn_strategy(controller):
    check = TurnCheck(utterance(0.0, 1.0), np.zeros(16_000, np.float32))
    assert controller.on_vad_event(check) == [CheckEndOfTurn(check)]


def test_interrupting_twice_acts_once_and_reset_forgets_everything(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    assert controller.interrupt_current("interrupt command") == [Interrupted(turn, "interrupt command")]
    assert controller.interrupt_current("interrupt command") == []
    controller.ended(turn)
    held = controller.on_vad_event(SpeechPaused(utterance(2.0, 3.0)))[1].turn
    controller.carry_over = "words"
    assert controller.reset() == []
    assert held.cancel.is_set() and controller.held is None and controller.carry_over == ""


def test_a_new_endpointer_drops_the_held_reply_and_a_new_barge_in_minimum_starts_afresh(controller):
    held = controller.on_vad_event(SpeechPaused(utterance(1.0, 2.0)))[1].turn
    controller.use_policy(TurnPolicy(barge_in_min_ms=300), new_vad=True)
    assert held.cancel.is_set() and controller.held is None
    policy = controller.barge_in
    controller.use_policy(TurnPolicy(barge_in_min_ms=300))
    assert controller.barge_in is policy  # unchanged: speech over the reply keeps its place
    controller.use_policy(TurnPolicy(barge_in_min_ms=500))
    assert controller.barge_in is not policy and controller.barge_in.min_s == 0.5


def test_hold_reply_actions_carry_the_paused_utterance(controller):
    paused = utterance(1.0, 2.0)
    hold = controller.on_vad_event(SpeechPaused(paused))[1]
    assert isinstance(hold, HoldReply) and hold.utterance is paused


def test_words_while_the_user_speaks_are_transcribed_only_when_nothing_else_runs(controller):
    controller.on_vad_event(SpeechStarted(1.0))
    so_far = utterance(1.0, 1.4)
    assert controller.on_vad_event(SpeechGrowing(so_far)) == [TranscribePartial(so_far)]
    controller.on_vad_event(SpeechEnded(utterance(1.0, 2.0)))  # a turn thinks now: the models are busy
    controller.on_vad_event(SpeechStarted(3.0))
    assert controller.on_vad_event(SpeechGrowing(utterance(3.0, 3.4))) == []


def test_talking_on_after_a_pause_drops_the_reply_held_there_at_once(controller):
    controller.on_vad_event(SpeechStarted(1.0))
    actions = controller.on_vad_event(SpeechPaused(utterance(1.0, 2.0)))
    held = actions[1].turn
    more = utterance(1.0, 2.5)
    assert controller.on_vad_event(SpeechGrowing(more)) == [TranscribePartial(more)]
    assert held.cancel.is_set() and controller.held is None and controller.phase is Phase.LISTENING


def test_speaking_started_is_an_input_the_controller_takes_on_the_event_loop(controller):
    turn = started_reply(controller.on_vad_event(SpeechEnded(utterance(0.0, 1.0))))
    assert controller.phase is Phase.THINKING and not turn.speaking
    controller.speaking_started(turn, 12.5)  # the model thread's first chunk, handed over by the assistant
    assert controller.phase is Phase.SPEAKING and turn.speaking and turn.played_at_start == 12.5
