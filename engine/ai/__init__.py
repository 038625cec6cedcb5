"""Model access: the OpenAI-compatible client and the offline responder."""
