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

from config import config_class, load_settings
from viralspot import check_settings
from viralspot.store import store_scheme

try:  # the app's settings, read and checked as the app reads them (config.py); the store URL too, and
    # production's refusals: once, here, not once a worker after the port is bound
    _settings, _unknown = load_settings(config_class(), os.environ)
    check_settings(_settings)
    _shared_store = store_scheme(str(_settings["SESSION_STORE_URL"])) != "memory"
except RuntimeError as error:
    raise SystemExit(f"viralspot: {error}") from None

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
_workers = os.environ.get("WEB_CONCURRENCY", "").strip() or str(multiprocessing.cpu_count() * 2 + 1 if _shared_store else 1)
if not (_workers.isascii() and _workers.isdigit()) or int(_workers) < 1:  # int() takes other digits
    raise SystemExit(f"WEB_CONCURRENCY ({_workers!r}) must be a whole number of workers, at least 1.")
workers = int(_workers)
if not _shared_store and workers > 1:
    raise SystemExit(
        f"WEB_CONCURRENCY={workers}, but memory:// sessions live in one process: several gunicorn workers "
        "would be several stores. Set VIRALSPOT_SESSION_STORE_URL=redis://host:6379/0 to share sessions "
        "between workers and hosts, or WEB_CONCURRENCY=1.")
#: gthread, answering the requests gunicorn itself refuses with the JSON envelope.
worker_class = "viralspot.gunicorn_worker.EnvelopeWorker"
threads = _settings["GUNICORN_THREADS"]
timeout = 30
#: A gthread worker keeps each connection it accepted, so a few long-lived connections can all
#: land on one worker; 0 closes each connection after its response and spreads requests.
keepalive = _settings["GUNICORN_KEEPALIVE"]
limit_request_line = _settings["GUNICORN_LIMIT_REQUEST_LINE"]
#: gunicorn's control socket (for ``gunicornc``) is one path per user ($HOME/.gunicorn/gunicorn.ctl):
#: every instance on a host took it over, and stopping one removed it from the others. Not used here.
control_socket_disable = True
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = _settings["LOG_LEVEL"]

# --- Logs: the request id on every access line; VIRALSPOT_LOG_FORMAT=json makes every line JSON ---
if _settings["LOG_FORMAT"] == "json":
    logger_class = "viralspot.gunicorn_logging.GunicornJsonLogger"
else:
    logger_class = "viralspot.gunicorn_logging.GunicornTextLogger"
    access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %({x-request-id}o)s'

# --- Prometheus multiprocess mode: a scrape answered by any worker reports every worker ---------
# Workers write their samples to files in PROMETHEUS_MULTIPROC_DIR. prometheus_client reads the
# variable when it is first imported, so it is set here in the master, before any worker is
# forked (nothing in the master imports prometheus_client before it). When the operator does not
# set it, a fresh directory is made and removed when the master exits; either way its files of a
# former run are deleted at start. A worker that exits is marked dead (its live gauges go; its
# counters stay).
_METRICS_ON = _settings["METRICS"]


def on_starting(server):
    if not _METRICS_ON:
        return
    import glob
    import tempfile

    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(stale)
    else:
        import atexit
        import shutil

        directory = tempfile.mkdtemp(prefix="viralspot-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        # Removed when the master exits, however it exits (gunicorn calls no on_exit when it cannot
        # bind its port); not when a forked worker does, which inherits the handler.
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master and shutil.rmtree(directory, ignore_errors=True))
    server.log.info("prometheus multiprocess directory: %s", directory)


def child_exit(server, worker):
    if _METRICS_ON and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

