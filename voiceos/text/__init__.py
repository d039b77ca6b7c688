"""Text for speech, apart from any stage: the sentence chunker that turns streamed text into speakable sentences
(the dialogue stage streams it, the TTS engines read it)."""
