"""The wired parts of a running app, kept on `app.extensions` by `create_app`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from engine.bootstrap import Runtime
from engine.calls import CallService, EventRecorder, FlowLibrary
from engine.settings import Settings
from engine.speech.warmup import Warmup
from engine.store import CallStore
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

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> CallStore:
        return self.runtime.store

    @property
    def library(self) -> FlowLibrary:
        return self.runtime.library

    @property
    def call_service(self) -> CallService:
        return self.runtime.call_service

    @property
    def recorder(self) -> EventRecorder:
        return self.runtime.recorder

    @property
    def warmup(self) -> Warmup | None:
        return self.runtime.warmup


def services(app: Any = None) -> Services:
    """The services of `app`, or of the app handling the current request or command."""
    found: Services = (app or current_app).extensions["phoney"]
    return found
