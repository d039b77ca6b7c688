"""Home Assistant's voice protocol (Wyoming): the loaded models served to HA and its satellites.

``voiceos wyoming`` serves, from one loaded :class:`voiceos.pipeline.Pipeline`: Whisper as an ASR program, every
voice profile (its emotions as speakers) as a TTS program, and the dialogue LM with its persona and memory as a
handle (conversation) program. The protocol and its framing are the ``wyoming`` library's; the modules here are the
server (:mod:`.server`), one connection (:mod:`.handler`), the shared model thread (:mod:`.service`), the ``info``
answer (:mod:`.info`), the voices (:mod:`.voices`), audio conversion (:mod:`.audio`) and read bounds (:mod:`.stream`).
"""

from voiceos.wyoming.server import DEFAULT_URI, WyomingServer, check_uri, exposure_warning, serve

__all__ = ["DEFAULT_URI", "WyomingServer", "check_uri", "exposure_warning", "serve"]
