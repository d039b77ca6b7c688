"""The dialogue stage: a streaming chat LM behind one protocol (:mod:`voiceos.dialogue.backend`), its shared types
(:mod:`voiceos.dialogue.types`) and the backends. Nothing is imported here: the protocol and the types load without
torch, and each backend brings its own runtime when it is imported."""
