"""Logging set-up: one stream handler on the ``viralspot`` logger, level from ``VIRALSPOT_LOG_LEVEL``."""
import logging
import sys

from flask import Flask

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def configure_logger(app: Flask) -> None:
    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    if level not in logging.getLevelNamesMapping():
        raise RuntimeError(f"VIRALSPOT_LOG_LEVEL {level!r} is not a logging level")
    logger = logging.getLogger("viralspot")
    logger.setLevel(level)
    if not any(getattr(h, "_viralspot", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._viralspot = True
        logger.addHandler(handler)
    app.logger.setLevel(level)
