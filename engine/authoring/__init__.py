"""Authoring tools around the engine: scenario runs through the real webhooks, and transports
that let the call simulator reach an app in process or a server over HTTP."""
