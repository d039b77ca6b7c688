"""``python -m voiceos.dialogue.llama_cpp_check GGUF``: exits 0 when llama.cpp prefills batches of prompt tokens
of ``GGUF`` here without crashing (see :func:`voiceos.dialogue.llama_cpp_lm.batch_size`, which runs it in a child
process: a segfault there costs the child only)."""

from __future__ import annotations

import sys


def main(gguf: str) -> int:
    from llama_cpp import Llama

    llama = Llama(model_path=gguf, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=2, verbose=False)
    for length in (300, 64, 7):
        llama.reset()
        llama.eval([(1000 + 37 * i) % llama.n_vocab() for i in range(length)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
