"""The call service and what it needs: no Flask, no Prometheus, no HTTP.

`CallService` drives calls for any transport (Twilio's webhooks today); `FlowLibrary` holds the
flows it runs, pinned per call; the limits, the event recorder, the callback URLs and the ports
are its parts. engine/bootstrap.py builds them; engine/web/ only adapts HTTP to them.
"""

from engine.calls.library import FlowLibrary, NoFlowsLoaded, Pinned
from engine.calls.limits import CallLimits, call_limits
from engine.calls.ports import Clock, SpeechFailure, Voicing, VoicingFactory
from engine.calls.recorder import EventObserver, EventRecorder
from engine.calls.service import CallService
from engine.calls.urls import CallbackUrls

__all__ = [
    "CallLimits",
    "CallService",
    "CallbackUrls",
    "Clock",
    "EventObserver",
    "EventRecorder",
    "FlowLibrary",
    "NoFlowsLoaded",
    "Pinned",
    "SpeechFailure",
    "Voicing",
    "VoicingFactory",
    "call_limits",
]
