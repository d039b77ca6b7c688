"""Timers and reminders as state on a stepped clock (voiceos.alarms): what is due when, limits, and reminders kept
on disk across a restart."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta

import pytest

from voiceos.alarms import ReminderBook, ReminderError, TimerBoard, TimerError
from voiceos.alarms.chime import chime
from voiceos.alarms.reminders import as_told, reminders_command
from voiceos.clock import FixedClock
from voiceos.errors import VoiceosError

NOW = datetime(2026, 12, 7, 14, 10).astimezone()


@pytest.fixture
def clock():
    return FixedClock(NOW)


def test_a_timer_is_due_once_its_time_has_passed_and_not_before(clock):
    board = TimerBoard(clock)
    timer = board.start(300)
    clock.advance(299)
    assert board.pop_due() == [] and board.next_due_in() == pytest.approx(1)
    clock.advance(1)
    assert board.pop_due() == [timer]
    assert board.timers == [] and board.pop_due() == []
    assert timer.notice() == "Your five minute timer is done."


def test_several_timers_ring_in_their_own_order(clock):
    board = TimerBoard(clock)
    long, short = board.start(600, "pasta"), board.start(60)
    clock.advance(60)
    assert board.pop_due() == [short]
    clock.advance(540)
    assert board.pop_due() == [long]
    assert long.notice() == "Your pasta timer is done."


def test_a_paused_timer_keeps_its_time_until_resumed(clock):
    board = TimerBoard(clock)
    timer = board.start(100)
    clock.advance(40)
    board.pause(timer)
    clock.advance(1000)
    assert board.pop_due() == [] and board.left(timer) == pytest.approx(60)
    board.resume(timer)
    clock.advance(59)
    assert board.pop_due() == []
    clock.advance(1)
    assert board.pop_due() == [timer]


def test_time_added_or_taken_away_moves_the_end(clock):
    board = TimerBoard(clock)
    timer = board.start(60)
    board.extend(timer, 120)
    assert board.left(timer) == pytest.approx(180)
    board.extend(timer, -1000)  # below zero: done at once
    assert board.pop_due() == [timer]


def test_timers_are_found_by_name_and_by_length(clock):
    board = TimerBoard(clock)
    pasta, five = board.start(600, "pasta"), board.start(300)
    assert board.find("the pasta") == [pasta]
    assert board.find(seconds=300) == [five]
    assert board.find() == [pasta, five]


def test_timer_limits_refuse_before_anything_is_set(clock):
    board = TimerBoard(clock, max_timers=2, max_seconds=3600)
    with pytest.raises(TimerError, match="up to one hour"):
        board.start(3601)
    board.start(10)
    board.start(20)
    with pytest.raises(TimerError, match="two timers"):
        board.start(30)
    assert len(board.timers) == 2


def test_the_board_tells_its_listeners(clock):
    board = TimerBoard(clock)
    started, changes = [], []
    board.on_started, board.on_change = started.append, lambda: changes.append(1)
    timer = board.start(5)
    board.cancel(timer)
    assert started == [timer] and len(changes) == 2


def test_reminders_are_due_at_their_wall_clock_time(clock):
    book = ReminderBook(clock)
    later = book.add("call your mother", NOW + timedelta(hours=4))
    sooner = book.add("take the pizza out", NOW + timedelta(minutes=20))
    assert book.reminders == [sooner, later]
    clock.advance(20 * 60)
    assert book.pop_due() == [sooner]
    assert sooner.notice() == "Reminder: take the pizza out."
    assert book.reminders == [later]


def test_reminders_survive_a_restart_in_a_private_file(clock, tmp_path):
    path = tmp_path / "data" / "reminders.json"
    book = ReminderBook(clock, path)
    reminder = book.add("water the plants", NOW + timedelta(days=1))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    again = ReminderBook(clock, path)  # a new process
    assert again.reminders == [reminder]
    clock.advance(2 * 86400)  # it was off when it was due: still rung once, then gone from the file
    assert again.pop_due() == [reminder]
    assert json.loads(path.read_text())["reminders"] == []


def test_a_reminder_added_by_another_process_is_seen(clock, tmp_path):
    path = tmp_path / "reminders.json"
    daemon_book, chat_book = ReminderBook(clock, path), ReminderBook(clock, path)
    added = chat_book.add("feed the cat", NOW + timedelta(hours=1))
    assert daemon_book.reminders == [added]


def test_a_damaged_reminders_file_is_reported_not_fatal(clock, tmp_path, caplog):
    path = tmp_path / "reminders.json"
    path.write_text("{not json")
    book = ReminderBook(clock, path)
    assert book.reminders == []
    assert "cannot be read" in caplog.text


def test_reminders_in_the_past_too_far_ahead_or_too_many_are_refused(clock):
    book = ReminderBook(clock, max_reminders=1)
    with pytest.raises(ReminderError, match="already passed"):
        book.add("x", NOW - timedelta(minutes=1))
    with pytest.raises(ReminderError, match="up to a year"):
        book.add("x", NOW + timedelta(days=400))
    book.add("x", NOW + timedelta(hours=1))
    with pytest.raises(ReminderError, match="one reminder,"):
        book.add("y", NOW + timedelta(hours=2))
    assert len(book.reminders) == 1


def test_the_reminders_command_lists_and_cancels_by_number(clock):
    book = ReminderBook(clock)
    book.add("one", NOW + timedelta(hours=1))
    book.add("two", NOW + timedelta(hours=2))
    data = reminders_command(book, 1)
    assert data["cancelled"]["task"] == "one" and [r["task"] for r in data["reminders"]] == ["two"]
    with pytest.raises(VoiceosError, match="no reminder number 5"):
        reminders_command(book, 5)
    with pytest.raises(VoiceosError, match="must be a reminder number"):
        reminders_command(book, "x")


def test_the_task_is_told_back_to_the_user():
    assert as_told("call my mother") == "call your mother"
    assert as_told("to take my pills.") == "take your pills"


def test_the_chime_is_short_and_not_too_loud():
    samples = chime(22050)
    assert 0.3 < len(samples) / 22050 < 1.0
    assert 0.1 < abs(samples).max() <= 0.3
