"""The HTTP shell: the app factory and its blueprints."""

from engine.web.app import create_app

__all__ = ["create_app"]
