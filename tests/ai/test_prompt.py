"""What the model is sent (personality, vars, examples, style, instructions, transcript, exits as
tools) and what the caller hears of what it sends back (short, speakable, no markdown)."""

from __future__ import annotations

import re

from flask import Flask

from tests.ai.conftest import Phone, heard_text, last_user_message
from tests.doubles.openai_server import OpenAIDouble, Status, Text


def test_the_prompt_has_the_personality_the_flow_the_node_and_the_transcript(
        phone: Phone, double: OpenAIDouble) -> None:
    c = phone().start()
    c.say("do you do whitening")

    request = double.chat_requests[0]
    messages = request.messages
    system = messages[0]
    assert system["role"] == "system"
    prompt = system["content"]
    assert "You are the friendly voice of Acme Dental on the phone." in prompt  # vars rendered
    assert "{{" not in prompt and "{%" not in prompt
    assert "at most 2 short sentences" in prompt  # style.max_sentences
    assert "Never use markdown" in prompt
    assert "You answer the main line of Acme Dental, a family dental practice." in prompt
    assert "Monday to Thursday from eight in the morning" in prompt  # instructions with vars
    assert request.temperature == 0.8  # style.temperature

    # The personality's examples, as earlier turns, in order.
    examples = messages[1:13]
    assert [m["role"] for m in examples] == ["user", "assistant"] * 6
    assert examples[0]["content"] == "Hi, are you guys open on Saturdays?"
    assert examples[5]["content"] == "Of course, no problem at all. Let me get someone for you."

    # The call so far, then what the caller just said, exactly once.
    assert messages[13:] == [
        {"role": "assistant", "content": "Thanks for calling Acme Dental."},
        {"role": "assistant",
         "content": "This is the virtual receptionist. How can I help you today?"},
        {"role": "user", "content": "do you do whitening"},
    ]

    tools = {tool["function"]["name"]: tool for tool in request.tools}
    assert set(tools) == {"front_desk", "voicemail", "goodbye"}
    assert "leave a message" in tools["voicemail"]["function"]["description"]
    assert all(tool["type"] == "function" for tool in tools.values())


def test_the_second_turn_carries_the_first(phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text("Yes, we do whitening. Anything else?"))
    c = phone().start()
    c.say("do you do whitening")
    c.say("and where are you")

    second = double.chat_requests[1].messages
    assert second[-3:] == [
        {"role": "user", "content": "do you do whitening"},
        {"role": "assistant", "content": "Yes, we do whitening. Anything else?"},
        {"role": "user", "content": "and where are you"},
    ]


def test_the_fallback_personality_gets_its_own_prompt_and_style(
        phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Status(400), Text("We offer whitening. Anything else I can help with?"))
    c = phone().start()
    c.say("do you do whitening")

    first, second = double.chat_requests
    assert first.messages[0]["content"].startswith("You are the friendly voice of Acme Dental")
    assert second.messages[0]["content"].startswith(
        "You are the professional voice of Acme Dental")
    assert second.temperature == 0.3
    assert last_user_message(second.messages) == "do you do whitening"


MARKDOWN_ESSAY = (
    "## Our services\n\n**Great question!** Here is *everything* we offer:\n\n"
    + "\n".join(f"{i}. **Service number {i}**: a long description of what it involves, "
                f"see [our page](https://example.com/services/{i}) for details."
                for i in range(1, 80))
    + "\n\n```\ncode that should never be read\n```\n\nLet me know! 😀"
)


def test_a_markdown_essay_is_heard_short_and_clean(app: Flask, phone: Phone,
                                                   double: OpenAIDouble) -> None:
    assert len(MARKDOWN_ESSAY) > 5000
    double.chat(Text(MARKDOWN_ESSAY))
    c = phone().start()
    mark = len(c.heard)
    c.say("what do you offer")

    reply = " ".join(heard_text(app, double, c)[mark:])
    assert reply, "the caller heard nothing"
    assert len(reply) <= 600
    assert not re.search(r"[*#`\[\]_|>]|https?:|😀", reply), reply
    assert not re.search(r"(^|\s)\d+\.\s", reply), reply  # no list numbering read out
    sentences = re.findall(r"[^.!?]+[.!?]", reply)
    assert 1 <= len(sentences) <= 3, reply
    assert c.waiting.kind == "gather"  # the flow is still in control: listening


def test_a_5000_character_plain_reply_is_cut_to_a_few_sentences(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    rambling = " ".join(f"Sentence {i} goes on about our practice for quite a while."
                        for i in range(100))
    assert len(rambling) > 5000
    double.chat(Text(rambling))
    c = phone().start()
    mark = len(c.heard)
    c.say("tell me about yourselves")

    reply = " ".join(heard_text(app, double, c)[mark:])
    assert reply.startswith("Sentence 0 goes on")
    assert len(reply) <= 600
    assert reply.count(".") <= 3
