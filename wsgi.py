"""WSGI entry point: ``gunicorn wsgi:app``."""
from viralspot import create_app

app = create_app()
