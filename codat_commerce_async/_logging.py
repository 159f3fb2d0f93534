"""The SDK's logger. Set ``CODAT_LOG=debug`` (or ``info``) to see it without configuring logging.

Log lines name the method, path, status, attempt and wait; they never contain
headers, bodies or credentials.
"""

from __future__ import annotations

import logging
import os

__all__ = ["logger", "setup_from_env"]

logger = logging.getLogger("codat_commerce_async")

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def setup_from_env() -> None:
    """Honour ``CODAT_LOG`` once, for people who have not configured logging."""
    level = _LEVELS.get(os.environ.get("CODAT_LOG", "").strip().lower())
    if level is None or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
