"""voiceos: a private, local voice assistant (VAD -> Whisper -> dialogue LM -> Piper TTS)."""

import os
import sys

from voiceos.cpu import block_kernel_possible

__version__ = "0.1.0"

# OpenMP's idle workers (torch's and CTranslate2's) spin for a while after each parallel region by default. On a
# 2-core machine they then hold the cores that the LM's block kernel (its own small thread pool) needs between two
# products: decoding measured 10x slower. Where the kernel can run, OpenMP is told to wait passively instead; Whisper
# costs the same either way (421-437 ms), but torch's own float32 decoding slows down, so it is left alone where the
# kernel cannot run (no C compiler, no AVX2). It only takes effect before torch or CTranslate2 load, so it is set
# here, first; a value the user set is kept. OPENMP_WAITS_PASSIVELY says whether it took effect.
if block_kernel_possible():
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
OPENMP_WAITS_PASSIVELY = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" and not (
    {"torch", "ctranslate2"} & sys.modules.keys()
)
