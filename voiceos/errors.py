"""Errors that reach the user as one clear line (the CLI prints ``str(err)`` and exits non-zero)."""

from __future__ import annotations


class VoiceosError(Exception):
    """Base class: the message is complete and user-facing, no traceback is shown."""


class ConfigError(VoiceosError):
    """The configuration is invalid: the message names the file, the key and what is expected."""


class AudioInputError(VoiceosError):
    """An audio file is missing, unreadable, corrupt or empty."""


class TextInputError(VoiceosError):
    """Text input is empty or over the configured limit."""


class ModelNotFoundError(VoiceosError):
    """A configured model cannot be found locally (and may not be downloaded)."""


class AudioDeviceError(VoiceosError):
    """No usable audio device (no sound server, unknown device name, ...)."""


class ModelLoadError(VoiceosError):
    """A model file exists but cannot be used (corrupt, wrong shape, does not fit the other models)."""


class DialogueServerError(VoiceosError):
    """The dialogue LM's server (dialogue.backend: openai) is down, too slow, or answered something unusable."""
