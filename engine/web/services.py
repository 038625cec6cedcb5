"""The wired parts of a running app, kept on `app.extensions` by `create_app`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from engine.bootstrap import Runtime
from engine.calls import CallService, EventRecorder, FlowLibrary
from engine.settings import Settings
from engine.speech.warmup import Warmup
from engine.store import CallStore
from engine.web.request_keys import RequestKeys
from engine.web.twilio_rest import TwilioRest

AppFactory = Callable[..., Flask]
"""`create_app` itself: what the scenario runner uses to make apps of its own."""


@dataclass
class Services:
    """The call service's runtime, and what only the HTTP shell needs besides."""

    runtime: Runtime
    dashboard_password: str
    make_app: AppFactory
    twilio: TwilioRest | None = None  # REST client for call control; see create_app
    request_keys: RequestKeys = field(default_factory=RequestKeys)  # keyed: see create_app

    @property
    def settings(self) -> Settings:
        """The settings the app was made with."""
        return self.runtime.settings

    @property
    def store(self) -> CallStore:
        """The call store."""
        return self.runtime.store

    @property
    def library(self) -> FlowLibrary:
        """The flows, live and pinned."""
        return self.runtime.library

    @property
    def call_service(self) -> CallService:
        """The call service the webhooks drive."""
        return self.runtime.call_service

    @property
    def recorder(self) -> EventRecorder:
        """Where events outside a step are written (and observed)."""
        return self.runtime.recorder

    @property
    def warmup(self) -> Warmup | None:
        """The speech warm-up; None without OpenAI voices."""
        return self.runtime.warmup


def services(app: Any = None) -> Services:
    """The services of `app`, or of the app handling the current request or command."""
    found: Services = (app or current_app).extensions["phoney"]
    return found
