"""gunicorn settings for the viralspot API.

The in-memory session store lives inside one process: several workers would be
several stores (items repeat, a reset reaches one worker only). So with
``memory://`` we run one worker with threads and refuse more; with a shared
store (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``) we run
``cores x 2 + 1`` workers by default. The app is loaded in each worker (no
``preload_app``), so no database or Redis connection crosses a fork.
"""
import multiprocessing
import os

bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
_store_url = os.environ.get("VIRALSPOT_SESSION_STORE_URL", "memory://")
_shared_store = not _store_url.strip().lower().startswith("memory:")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1 if _shared_store else 1))
if not _shared_store and workers > 1:
    raise SystemExit(
        f"WEB_CONCURRENCY={workers}, but memory:// sessions live in one process: several gunicorn workers "
        "would be several stores. Set VIRALSPOT_SESSION_STORE_URL=redis://host:6379/0 to share sessions "
        "between workers and hosts, or WEB_CONCURRENCY=1.")
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 30
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("VIRALSPOT_LOG_LEVEL", "info").lower()
