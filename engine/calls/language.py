"""The language of a caller's utterance, among the flow's, offline: `detected_language`.

The detector is langdetect (a port of Google's language-detection library: character n-gram
profiles of 55 languages, pure Python, no model download and no network). Its profiles are
loaded for the flow's languages only, so a short Spanish answer is weighed against English and
Spanish, not against Welsh or Slovak, which is where langdetect goes astray on a word or two.
An utterance is given a language only when the detector is sure of it (`MIN_PROBABILITY`) and
has letters enough to judge; otherwise the answer is '' ("not sure"), as DESIGN.md 8.2 asks.
The pure core never detects: the call service does here, and steps the answer as data on the
`Heard` event (`Heard.language`).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

from engine.flows.languages import primary

MIN_PROBABILITY = 0.9
MIN_LETTERS = 3
MAX_DETECTED_CHARS = 500
"""Characters of an utterance read: more tells the detector nothing new and costs time."""

_lock = threading.Lock()


def _profile(code: str) -> str | None:
    # langdetect names Chinese zh-cn / zh-tw; every other profile is the primary subtag.
    name = {"cmn": "zh-cn", "zh": "zh-cn", "yue": "zh-tw"}.get(code, code)
    path = Path(PROFILES_DIRECTORY) / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


@lru_cache(maxsize=32)
def _factory(codes: tuple[str, ...]) -> DetectorFactory | None:
    profiles = [text for text in map(_profile, codes) if text is not None]
    if len(profiles) < 2:
        return None  # one language (or none the detector knows): nothing to tell apart
    factory = DetectorFactory()
    factory.load_json_profile(profiles)
    factory.set_seed(0)  # langdetect samples at random: the same text always gets one answer
    return factory


def detectable(languages: tuple[str, ...]) -> bool:
    """Whether utterances can be told apart among `languages` (two or more the detector
    has a profile for)."""
    return _factory(tuple(dict.fromkeys(primary(tag) for tag in languages))) is not None


def detect(text: str, languages: tuple[str, ...]) -> str:
    """The one of `languages` (BCP 47 tags, the flow's) `text` is in, or '' when unsure: too
    few letters, no language probable enough, or a flow of one language. Two tags of one
    language (en-US, en-GB) cannot be told apart: the first is given."""
    codes = tuple(dict.fromkeys(primary(tag) for tag in languages))
    factory = _factory(codes)
    text = text[:MAX_DETECTED_CHARS]
    if factory is None or sum(char.isalpha() for char in text) < MIN_LETTERS:
        return ""
    with _lock:  # the factory's seeded random generator is shared by its detectors
        detector = factory.create()
        detector.append(text)
        try:
            found = detector.get_probabilities()
        except LangDetectException:
            return ""
    if not found or found[0].prob < MIN_PROBABILITY:
        return ""
    code = {"zh-cn": "cmn", "zh-tw": "yue"}.get(found[0].lang, found[0].lang)
    for tag in languages:
        if primary(tag) == code or (code == "cmn" and primary(tag) == "zh"):
            return tag
    return ""
