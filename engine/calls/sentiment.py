"""The sentiment of a caller's utterance: VADER's compound score, in [-1, 1], offline.

VADER (`vaderSentiment`, a lexicon and rules, no model and no network) reads English. A call in
another language (the flow's `language` not `en…`) is not scored, rather than given a number
VADER would make up from the few English words it recognises: it has no `call.sentiment` events,
and `sentiment`, `sentiment_avg` and `sentiment_trend` stay 0. The pure core never scores
anything: the call service scores each utterance here and steps it as data on the `Heard` event
(`Heard.sentiment`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

MAX_SCORED_CHARS = 1000
"""Characters of an utterance that are scored: speech results are far shorter, and a relay prompt
of thousands of emoji must not cost more than a short sentence would."""


class Analyzer(Protocol):
    """VADER's `SentimentIntensityAnalyzer`, as far as it is used here."""

    def polarity_scores(self, text: str) -> dict[str, float]:
        """`neg`, `neu`, `pos` and `compound` (the one used) for `text`."""


@lru_cache(maxsize=1)
def _analyzer() -> Analyzer:
    # Its lexicon is read from the package on first use (about 10 ms), once per process.
    analyzer: Analyzer = SentimentIntensityAnalyzer()
    return analyzer


def scores_language(language: str) -> bool:
    """Whether utterances in `language` (a BCP 47 tag such as en-US) are scored."""
    return language.lower().startswith("en")


def score(text: str, language: str = "en-US") -> float | None:
    """The sentiment of `text` in [-1, 1] (negative is unhappy), rounded to 3 places; None when
    `language` is not one the scorer reads. Deterministic: the same text always scores the
    same."""
    if not scores_language(language):
        return None
    text = text[:MAX_SCORED_CHARS]
    if not text.strip():
        return 0.0
    compound = float(_analyzer().polarity_scores(text)["compound"])
    return round(min(max(compound, -1.0), 1.0), 3)
