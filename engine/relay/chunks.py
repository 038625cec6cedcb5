"""A streamed reply cut into the pieces a relay session sends as `text` tokens.

Each complete word goes out as soon as the space after it arrives, so the caller hears the
model's first words, not its first sentence. The cut is sentence-aware: a reply is kept to the
personality's `max_sentences`, plus one more when that one is a question (as
`engine.ai.speakable.limit_reply` keeps it), so the sentence past them is held back until it
shows whether it is one; markdown marks are dropped.
"""

from __future__ import annotations

import re

from engine.ai.speakable import first_sentence

_MARKS = re.compile(r"[*#`~]+")
"""Markdown emphasis, headings and code marks: nothing a voice should read out."""


def sentence_ends(text: str) -> list[int]:
    """The offset just past each complete sentence of `text` (as `first_sentence` finds them:
    a sentence is complete once the next one has begun)."""
    ends: list[int] = []
    used = 0
    while (split := first_sentence(text[used:])) is not None:
        used = len(text) - len(split[1])
        ends.append(used)
    return ends


class Chunker:
    """Fed a reply's deltas (`add`), gives what may be sent now; `finish` gives the rest once
    the reply has ended. `full` turns True when the reply has all it may have: the reader can
    stop."""

    def __init__(self, max_sentences: int) -> None:
        self.max_sentences = max(1, max_sentences)
        self.text = ""  # the reply so far, without markdown marks
        self.offset = 0  # characters of it already given out
        self.full = False

    @property
    def sent(self) -> str:
        """What was given out so far."""
        return self.text[:self.offset]

    def add(self, delta: str) -> str:
        """Take `delta`; the piece that may be sent now ('' when none)."""
        if self.full:
            return ""
        self.text += _MARKS.sub("", delta)
        return self._upto(self._limit(ended=False))

    def finish(self) -> str:
        """The rest that may be sent, the reply having ended."""
        if self.full:
            return ""
        self.full = True
        return self._upto(self._limit(ended=True))

    def _limit(self, ended: bool) -> int:
        text, most = self.text, self.max_sentences
        ends = sentence_ends(text)
        if len(ends) > most:  # the sentence past the limit is complete: kept if a question
            self.full = True
            extra = text[ends[most - 1]:ends[most]].strip()
            return ends[most] if extra.endswith("?") else ends[most - 1]
        if len(ends) == most:  # what follows is the extra sentence: held until it is whole
            if ended and text[ends[most - 1]:].strip().endswith("?"):
                return len(text)
            return ends[most - 1]
        if ended:
            return len(text)
        return text.rfind(" ") + 1  # whole words only

    def _upto(self, limit: int) -> str:
        if limit <= self.offset:
            return ""
        piece = self.text[self.offset:limit]
        self.offset = limit
        return piece
