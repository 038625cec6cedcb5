"""Entry point: `flask` finds `app` here with no flag; gunicorn serves `app:app`."""

from engine.web.app import create_app

app = create_app()
