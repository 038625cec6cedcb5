"""Starting points for a new flow: small, valid flows with comments that say what to change.

Each template is YAML text with `FLOW_ID` where the new flow's id goes (the flow's id must equal
its file name). The texts stay valid flows; tests check every one of them.
"""

from __future__ import annotations

__all__ = ["TEMPLATES", "template_text"]

_GREETING = """\
# yaml-language-server: $schema=../schemas/flow.schema.json
# A greeting, then goodbye. Add nodes from the palette and connect them.
flow: FLOW_ID
description: A new call flow.
personality: friendly
language: en-US
vars:
  business: Our business    # the personalities say this name
start: greet
nodes:
  greet:
    type: say
    text: Thanks for calling.   # what the caller hears first
    next: goodbye

  goodbye:
    type: hangup
    text: Goodbye!
"""

_MENU = """\
# yaml-language-server: $schema=../schemas/flow.schema.json
# A menu: one question, answered by voice or keypad, and a route for each answer.
flow: FLOW_ID
description: A menu that sends callers where they asked to go.
personality: professional
language: en-US
vars:
  business: Our business    # the personalities say this name
defaults:                   # every node inherits these unless it sets its own
  no_input: {retries: 1, reprompt: ["Are you still there?"], then: goodbye}
start: menu
nodes:
  menu:
    type: gather
    prompt: Say sales or support, or press 1 or 2.
    input: [speech, dtmf]
    routes:
      - when: said_any('sales') or digits == '1'
        to: sales
    next: support              # anything else

  sales:
    type: say
    text: Our sales team will call you back today.
    next: goodbye

  support:
    type: say
    text: Please visit our help pages, or call back in office hours.
    next: goodbye

  goodbye:
    type: hangup
    text: Thanks for calling. Goodbye!
"""

_ASSISTANT = """\
# yaml-language-server: $schema=../schemas/flow.schema.json
# An AI conversation with one way out the model may take.
flow: FLOW_ID
description: An assistant that answers questions.
personality: friendly
language: en-US
vars:
  business: Our business    # the personalities say this name
defaults:                   # every node inherits these unless it sets its own
  no_input: {retries: 1, reprompt: ["Are you still there?"], then: goodbye}
  on_error:
    network:     {retry: 2, then: sorry}
    rate_limit:  {retry: 1, then: sorry}
    ai_failure:  {personality: professional, then: sorry}
    tts_failure: {voice: twilio}
start: assist
nodes:
  assist:
    type: ai
    instructions: Answer the caller's questions briefly and kindly.
    exits:
      goodbye: The caller has nothing more to ask.

  sorry:
    type: hangup
    text: Sorry, something went wrong on our side. Please call again later.

  goodbye:
    type: hangup
    text: Thanks for calling. Goodbye!
"""

TEMPLATES: dict[str, tuple[str, str]] = {
    "greeting": ("A greeting, then goodbye", _GREETING),
    "menu": ("A menu with routes", _MENU),
    "assistant": ("An AI assistant", _ASSISTANT),
}
"""Template id -> (title, text)."""


def template_text(template: str, flow_id: str) -> str:
    """The template's text for a flow named `flow_id`; KeyError for an unknown template."""
    return TEMPLATES[template][1].replace("FLOW_ID", flow_id)
