"""Entry point: `flask` finds `app` here with no flag; gunicorn serves `app:app`.

Settings that cannot be used stop it with one line each, not a traceback (engine/web/startup.py).
"""

from engine.web.app import create_app
from engine.web.startup import load_app

app = load_app(create_app)
