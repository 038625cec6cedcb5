"""The pure text functions that keep replies speakable, as the streaming code uses them."""

from __future__ import annotations

import pytest

from engine.ai.speakable import first_sentence, limit_reply, speakable, split_sentences


@pytest.mark.parametrize(("text", "sentence"), [
    ("Sure thing. We do", "Sure thing."),
    ("**Sure!** Here is the list", "**Sure!**"),
    ("# Welcome!\n\nWe do cleanings", "# Welcome!"),
    ("Dr. Smith is in today. She", "Dr. Smith is in today."),
    ("It costs 3.50 dollars. Anything", "It costs 3.50 dollars."),
    ("She said \"yes.\" Then", "She said \"yes.\""),
    ("Sure thing.\n- Cleanings", "Sure thing."),
])
def test_first_sentence(text: str, sentence: str) -> None:
    found = first_sentence(text)
    assert found is not None and found[0] == sentence
    assert found[0] + found[1] == text or text.startswith(found[0])


@pytest.mark.parametrize("text", [
    "Sure thing", "Here are our services:\n\n1. Cleanings", "1. Cleanings\n2. Fillings",
    "We open at 8.30", "",
])
def test_no_first_sentence_yet(text: str) -> None:
    assert first_sentence(text) is None


def test_a_numbered_list_is_never_cut_after_its_number() -> None:
    text = "Here is what we offer:\n\n1. Cleanings for everyone.\n2. Fillings. Call us!"
    found = first_sentence(text)
    assert found is not None
    assert speakable(found[0]) == "Here is what we offer: Cleanings for everyone."


def test_speakable_strips_markdown_lists_links_and_emoji() -> None:
    text = ("## Hours\n**We're open** _Monday_ to Friday.\n- Cleanings\n- [Whitening]"
            "(https://x.example/w)\n\n```\nprint(1)\n```\nSee you soon 😀")
    assert speakable(text) == ("Hours. We're open Monday to Friday. Cleanings. Whitening. "
                               "See you soon")


def test_limit_reply_keeps_a_trailing_question_and_a_length_cap() -> None:
    assert limit_reply("One. Two. Three? Four.", 2) == "One. Two. Three?"
    assert limit_reply("One. Two. Three. Four?", 2) == "One. Two."
    long = " ".join(["word"] * 400) + "."
    assert len(limit_reply(long, 2)) <= 600


def test_split_sentences_keeps_the_unfinished_tail() -> None:
    assert split_sentences("One. Two! Thr") == ["One.", "Two!", "Thr"]
