"""`flask doctor`: what works in this configuration and what to fix.

The settings (every one, as the server's start checks them: engine/web/settings_check.py), the
flows, the store (opened, written, read back), the Twilio credentials' shape, the model endpoint
(a tiny streamed chat request with a tool, and a speech request) and Pusher (a trigger to a test
channel), each reported on one line; exit 1 when something is broken.
"""

from engine.doctor.command import doctor_command
from engine.doctor.report import Finding, diagnose

__all__ = ["Finding", "diagnose", "doctor_command"]
