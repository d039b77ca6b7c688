"""voiceos: a private, local voice assistant (VAD -> Whisper -> dialogue LM -> Piper TTS)."""

__version__ = "0.1.0"
