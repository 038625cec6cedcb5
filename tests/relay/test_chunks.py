"""How a streamed reply is cut into `text` tokens: whole words as they come, the personality's
sentences and no more (one more when it is a question), no markdown."""

from __future__ import annotations

from engine.relay.chunks import Chunker


def feed(chunker: Chunker, deltas: list[str]) -> list[str]:
    return [chunker.add(delta) for delta in deltas] + [chunker.finish()]


def test_each_word_goes_out_as_soon_as_it_is_whole() -> None:
    pieces = feed(Chunker(3), ["Hel", "lo ", "there", ". How ", "are you?"])
    assert pieces == ["", "Hello ", "", "there. How ", "are ", "you?"]


def test_a_reply_is_kept_to_its_sentences_and_the_rest_is_dropped() -> None:
    chunker = Chunker(2)
    sent = "".join(feed(chunker, ["One. ", "Two. ", "Three is ", "long. ", "Four."]))
    assert sent == "One. Two. "
    assert chunker.full


def test_one_more_sentence_is_kept_when_it_is_a_question() -> None:
    sent = "".join(feed(Chunker(1), ["Sure. ", "What ", "time suits ", "you? ", "Anything."]))
    assert sent.strip() == "Sure. What time suits you?"


def test_markdown_marks_are_not_sent() -> None:
    assert "".join(feed(Chunker(2), ["**Yes**, we ", "do `cleanings`."])) == \
        "Yes, we do cleanings."
