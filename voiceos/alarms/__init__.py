"""What rings later: timers (in memory) and reminders (on disk), as pure state on an injected clock; the daemon
rings them (voiceos.daemon.alarms), the skills set them (voiceos.skills)."""

from voiceos.alarms.reminders import Reminder, ReminderBook, ReminderError, reminders_path
from voiceos.alarms.timers import Timer, TimerBoard, TimerError

__all__ = ["Reminder", "ReminderBook", "ReminderError", "Timer", "TimerBoard", "TimerError", "reminders_path"]
