"""Request events: reading their fields, and the ``error`` codes a refused request is answered with."""

from __future__ import annotations

from typing import TypeVar, cast

from wyoming.event import Event, Eventable

from voiceos.errors import TextInputError, VoiceosError
from voiceos.wyoming.audio import AudioFormatError, AudioTooLong
from voiceos.wyoming.voices import VoiceRequestError

E = TypeVar("E", bound=Eventable)


class BadRequest(ValueError):
    """An event with fields of the wrong type, or a request this server has no program for."""


# The first match names the error; an exception matching none is a bug (logged, answered "internal").
ERROR_CODES: tuple[tuple[type[Exception], str], ...] = (
    (VoiceRequestError, "unknown-voice"),
    (AudioTooLong, "audio-too-long"),
    (AudioFormatError, "bad-audio"),
    (TextInputError, "bad-text"),
    (BadRequest, "bad-request"),
    (VoiceosError, "failed"),
)


def error_code(err: Exception) -> str | None:
    return next((code for kind, code in ERROR_CODES if isinstance(err, kind)), None)


def parse(kind: type[E], event: Event) -> E:
    """``kind.from_event(event)``, with a bad field (missing, of the wrong type) as a :class:`BadRequest`."""
    try:
        return cast(E, kind.from_event(event))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise BadRequest(f"malformed {event.type} event ({type(err).__name__}: {err})"[:300]) from None
