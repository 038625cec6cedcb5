"""ConversationRelay sessions: a relay ai node's conversation over Twilio's WebSocket.

`RelaySession` (engine/relay/session.py) speaks Twilio's side of nothing and knows nothing of
Flask: it reads Twilio's messages, steps each turn through the call service's relay turns
(engine/calls/relay.py) and sends replies as streamed `text` tokens, cut by `Chunker`
(engine/relay/chunks.py). engine/web/relay.py serves it on the app's WebSocket route.
"""
