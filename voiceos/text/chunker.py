"""Cut streamed LM text into speakable sentences, as soon as each one is known to be complete.

A sentence ends after ``.``, ``!``, ``?`` or ``…`` (plus closing quotes or brackets) followed by whitespace, or at a
newline. A full stop does not end a sentence after a title or common abbreviation ("Mr.", "Dr.", "e.g."), an initial,
or a list number; an ellipsis or "etc." ends one only when the next word starts with a capital letter. Decimals
("3.5") never split because no whitespace follows the point. Where the decision needs the next character, the chunker
waits for it, so the chunks never depend on how the text was split into deltas.

Each chunk is cleaned for a text-to-speech engine: markdown symbols, bullet markers, links' URLs and emoji go.
"""

from __future__ import annotations

import re

# Never a sentence end: titles and the like, which a name or an example always follows.
_ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof sr jr st mt rev hon gen col capt lt sgt vs cf e.g i.e approx dept est fig".split()  # noqa: SIM905
)
# A sentence end only when a capital letter follows (they often close a sentence too).
_MAYBE_END = frozenset(
    "etc a.m p.m inc ltd co corp no vol jan feb mar apr jun jul aug sep sept oct nov dec".split()  # noqa: SIM905
)
_CANDIDATE = re.compile(r"[.!?…]+|[,;:]|\n")
_CLOSERS = "\"')]}”’»*_`"
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")  # U.S, U.K
_PRONOUN_I = re.compile(r"I(?:['’](?:m|d|ll|ve)\b|\b)")

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_LINE_MARKER = re.compile(r"^\s*(?:[-*+•·‣◦▪–]|#{1,6})\s+", re.MULTILINE)
_SYMBOLS = re.compile(r"[*#`~]|__+|(?<!\w)_|_(?!\w)")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # mahjong .. symbols & pictographs extended-A (emoticons, transport, flags, ...)
    "\U00002600-\U000027bf"  # miscellaneous symbols, dingbats
    "\U00002b00-\U00002bff"  # arrows, stars
    "\U0000fe00-\U0000fe0f"  # variation selectors
    "\U0000200d"  # zero-width joiner
    "\U000020e3"  # combining keycap
    "\U000e0020-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.,!?;:…](?:\s|$))")
_NEED_MORE = -1


def clean_for_speech(text: str) -> str:
    """Remove what a TTS engine would read aloud but a listener should not hear: markdown, bullets, links, emoji."""
    text = _LINK.sub(r"\1", text)
    text = _LINE_MARKER.sub("", text)
    text = _SYMBOLS.sub("", text)
    text = _EMOJI.sub("", text)
    text = _SPACES.sub(" ", text)
    return _SPACE_BEFORE_PUNCT.sub("", text).strip()


class SentenceChunker:
    """Feed LM deltas with :meth:`push`; it returns the sentences completed so far. :meth:`flush` at the end.

    ``min_chars`` joins sentences shorter than that to the next one. With ``split_clauses`` a clause ending in
    ``,`` ``;`` or ``:`` becomes a chunk of its own once it is ``clause_min_chars`` long (earlier audio, less prosody).
    With ``first_clause`` only the reply's first chunk may be such a clause: speech starts after the first clause
    (the latency a listener notices) and the rest keeps whole-sentence intonation.
    """

    def __init__(
        self, min_chars: int = 1, split_clauses: bool = False, clause_min_chars: int = 40, first_clause: bool = False
    ) -> None:
        self.min_chars = min_chars
        self.split_clauses = split_clauses
        self.clause_min_chars = clause_min_chars
        self.first_clause = first_clause
        self._buffer = ""
        self._pending = ""  # cleaned sentences held back by min_chars
        self._emitted = False  # a chunk has gone out since the last reset

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """Everything still buffered, as the last chunks; the chunker is empty (and reusable) afterwards."""
        out = self._drain(final=True)
        rest = clean_for_speech(self._buffer)
        self._buffer = ""
        out.extend(self._emit(rest, final=True))
        self._emitted = False
        return out

    def reset(self) -> None:
        self._buffer = self._pending = ""
        self._emitted = False

    @property
    def _clauses_now(self) -> bool:
        return self.split_clauses or (self.first_clause and not self._emitted)

    # -- internals -------------------------------------------------------------------------------------------------
    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._next_cut(self._buffer, final)
            if cut <= 0:
                return out
            chunk, self._buffer = self._buffer[:cut], self._buffer[cut:]
            out.extend(self._emit(clean_for_speech(chunk), final=False))

    def _emit(self, sentence: str, final: bool) -> list[str]:
        if sentence and not any(c.isalnum() for c in sentence):
            sentence = ""  # a rule ("---"), stray punctuation or what is left of an emoji-only line
        joined = f"{self._pending} {sentence}".strip() if sentence else self._pending
        if not joined:
            return []
        if len(joined) < self.min_chars and not final:
            self._pending = joined
            return []
        self._pending = ""
        self._emitted = True
        return [joined]

    def _next_cut(self, text: str, final: bool) -> int:
        """Index just past the first sentence (or clause) end in ``text``; 0 if none, ``_NEED_MORE`` to wait."""
        start = len(text) - len(text.lstrip())
        for match in _CANDIDATE.finditer(text, start):
            mark = match.group()
            if mark == "\n":
                return match.end()
            end = match.end()
            while end < len(text) and text[end] in _CLOSERS:
                end += 1
            if end == len(text):
                return end if final else _NEED_MORE
            if not text[end].isspace():
                continue  # 3.5, e.g. (first point), "Hello.World"
            if mark in ",;:":
                if self._clauses_now and end - start >= self.clause_min_chars:
                    return end
                continue
            decision = self._ends_sentence(text, start, match.start(), mark, end, final)
            if decision:
                return end if decision > 0 else _NEED_MORE
        return 0

    @staticmethod
    def _ends_sentence(text: str, start: int, at: int, mark: str, end: int, final: bool) -> int:
        """1: the mark at ``at`` ends a sentence; 0: it does not; ``_NEED_MORE``: the next word decides."""
        if "!" in mark or "?" in mark:
            return 1
        word = text[start:at].rsplit(None, 1)[-1].lstrip("\"'([{“‘«*_`") if text[start:at].strip() else ""
        lowered = word.lower()
        if mark == "." and (lowered in _ABBREVIATIONS or (len(word) == 1 and word.isupper()) or _DOTTED.match(word)):
            return 0
        if mark == "." and word.isdigit() and not text[start:at].strip()[: -len(word)].strip():
            return 0  # "1." opening a numbered list item
        if mark == "." and lowered not in _MAYBE_END:
            return 1
        rest = text[end:]
        stripped = rest.lstrip()
        if not stripped:
            return 1 if final else _NEED_MORE
        if "\n" in rest[: len(rest) - len(stripped)]:
            return 1
        if stripped == "I" and not final:
            return _NEED_MORE  # "I" or "Ice"?
        if _PRONOUN_I.match(stripped):
            return 0  # "Well... I think so": "I" is capitalised anyway, so it says nothing
        return 1 if stripped[0].isupper() or stripped[0] in "\"“‘'(" else 0
