"""WSGI entry point: ``gunicorn wsgi:app`` (and the ``flask`` commands' app). Settings that cannot be
used stop it with their one-line message (``config.load_settings``), not a traceback, and exit code 4:
gunicorn's "App failed to load", on which its master stops instead of starting the worker again."""
import sys

from viralspot import create_app

#: gunicorn's ``Arbiter.APP_LOAD_ERROR``: a worker that exits with it stops the whole server.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except RuntimeError as error:
    print(f"viralspot: {error}", file=sys.stderr)
    raise SystemExit(APP_LOAD_ERROR) from None
