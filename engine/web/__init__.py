"""The HTTP shell: the app factory (`engine.web.app.create_app`) and its blueprints.

Importing a module of this package imports only what that module needs, never the whole app.
"""
