"""WSGI entry point: ``gunicorn wsgi:app`` (and the ``flask`` commands' app). Settings that cannot be
used stop it with their one-line message (``config.load_settings``), not a traceback."""
from viralspot import create_app

try:
    app = create_app()
except RuntimeError as error:
    raise SystemExit(f"viralspot: {error}") from None
