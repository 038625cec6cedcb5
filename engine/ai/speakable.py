"""Make model text fit a phone call: no markdown, no lists, a few sentences, split as it streams.

Models answer in markdown out of habit; a caller would hear "asterisk asterisk". These functions
are pure so the streaming code and the tests share them.
"""

from __future__ import annotations

import re

MAX_REPLY_CHARS = 600
"""Longest reply spoken in one turn: about 40 seconds of speech."""

_MARKDOWN = [
    (re.compile(r"```.*?```", re.S), " "),  # code blocks are never speakable
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: keep the text
    (re.compile(r"^\s{0,3}#{1,6}\s*", re.M), ""),  # headings
    (re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+", re.M), ""),  # list markers
    (re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # emphasis
    (re.compile(r"^\s*>\s?", re.M), ""),  # quotes
    (re.compile(r"^\s*\|.*\|\s*$", re.M), " "),  # tables
    (re.compile(r"https?://\S+"), "the link on our website"),
]
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F]")
# A sentence ends at . ! ? or … (after any closing quote, bracket or markdown emphasis), before
# whitespace and the capital or digit that starts the next one (possibly behind markdown). Not
# after an initial or a title, nor after the number of a numbered list item ("1. Cleanings").
_SENTENCE_END = re.compile(r"(?<!\b[A-Z])(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\bSt)"
                           r"(?<!^\d)(?<!^\d\d)(?<!^\s\d)(?<!^\s\s\d)"
                           r"([.!?…])[\"')\]*_]*\s+"
                           r"(?=(?:[\"'(\[*_#]+|[-*+•]\s+)?[A-Z0-9])", re.M)


def speakable(text: str) -> str:
    """Strip markdown, list markers, emoji and links; join lines into flowing sentences."""
    for pattern, replacement in _MARKDOWN:
        text = pattern.sub(replacement, text)
    text = _EMOJI.sub("", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = ""
    for line in lines:
        if joined and joined[-1] not in ".!?,;:":
            joined += "."  # a list item or line break ends a sentence when spoken
        joined += (" " if joined else "") + line
    return re.sub(r"\s+", " ", joined).strip()


def split_sentences(text: str) -> list[str]:
    """Complete sentences; the unfinished tail (if any) is the last item."""
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start:match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    return [*parts, tail] if tail else parts


def first_sentence(text: str) -> tuple[str, str] | None:
    """(first complete sentence, rest) once one is complete, else None."""
    match = _SENTENCE_END.search(text)
    if match is None:
        return None
    return text[:match.end()].strip(), text[match.end():]


def whole_sentences(text: str, ended: bool = False) -> tuple[str, int]:
    """The complete sentences at the start of streamed `text`, and how many characters they use.

    An unfinished tail is left out; when the stream has `ended` (cut off, say), a tail that ends
    like a sentence counts as one.
    """
    used = 0
    while (split := first_sentence(text[used:])) is not None:
        used = len(text) - len(split[1])
    tail = text[used:]
    if ended and speakable(tail).endswith((".", "!", "?", "…")):
        used = len(text)
    return text[:used].strip(), used


def limit_reply(text: str, max_sentences: int) -> str:
    """At most `max_sentences` sentences (one extra allowed for a question) and MAX_REPLY_CHARS."""
    sentences = split_sentences(speakable(text))
    kept = sentences[:max_sentences]
    if len(sentences) > max_sentences and sentences[max_sentences].endswith("?"):
        kept.append(sentences[max_sentences])
    reply = " ".join(kept)
    if len(reply) > MAX_REPLY_CHARS:
        cut = reply[:MAX_REPLY_CHARS]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        reply = cut[: end + 1] if end > MAX_REPLY_CHARS // 3 else cut.rsplit(" ", 1)[0] + "."
    return reply
