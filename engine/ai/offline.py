"""The offline responder: answers without a model, from the personality and the node.

Used when no `OPENAI_API_KEY` is configured, so `make run` and `flask call` work anywhere. It
takes an exit when the caller's words match the exit's name or description, else answers with
the personality example closest to what the caller said. Every reply is marked offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.flows.model import AiNode, Personality

_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "could", "do", "does", "for",
    "from", "has", "have", "hello", "hi", "how", "i", "i'm", "if", "in", "is", "it", "it's",
    "just", "like", "me", "my", "no", "not", "of", "on", "or", "our", "please", "so", "that",
    "the", "their", "them", "then", "there", "this", "to", "up", "want", "was", "we", "what",
    "when", "where", "which", "who", "will", "with", "would", "yes", "you", "your", "caller",
    "asks", "says", "wants",
))

NOT_UNDERSTOOD = ("Sorry, I can only help with a few things right now. Could you say that "
                  "another way, or ask for a person?")


@dataclass(frozen=True)
class OfflineReply:
    """What the offline responder says, and the exit it takes (None: it stays on the node)."""

    text: str
    exit: str | None = None


def _keywords(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower().replace("_", " "))
            if word not in _STOP and len(word) > 2}


def offline_reply(node: AiNode, personality: Personality, utterance: str | None,
                  business: str = "") -> OfflineReply:
    """The offline answer to `utterance` on `node` (None: open the conversation, greeting on
    behalf of `business`). Takes the exit whose name and description share the most words with
    what was said, when one alone does; else answers with the response of the personality's
    closest example, or `NOT_UNDERSTOOD` when no example shares a word. Pure and deterministic.
    """
    if utterance is None:  # a generated opening
        where = f" {business}" if business else ""
        return OfflineReply(f"Thanks for calling{where}. How can I help you today?")
    heard = _keywords(utterance)
    exits = [(len(heard & _keywords(f"{exit_.to} {exit_.description}")), exit_.to)
             for exit_ in node.exits]
    exits.sort(reverse=True)
    if exits and exits[0][0] > 0 and (len(exits) == 1 or exits[0][0] > exits[1][0]):
        return OfflineReply("Of course, one moment.", exit=exits[0][1])
    best_score, best_text = 0.0, NOT_UNDERSTOOD
    for example in personality.examples:
        words = _keywords(example.input)
        score = len(heard & words) / (len(heard | words) or 1)
        if score > best_score:
            best_score, best_text = score, example.response
    return OfflineReply(best_text)
