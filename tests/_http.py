"""The HTTP library the suite runs on: httpx (default) or httpx2.

``python -m pytest --http-library=httpx2`` (or ``CODAT_HTTP_LIBRARY=httpx2``) runs every
test on httpx2: the root conftest selects the library here and sets ``CODAT_HTTP_LIBRARY``,
so clients the tests build without naming a library (and the fake's transports, and
subprocesses) run on it too. Tests write ``httpx.X``; ``httpx`` below forwards each
attribute to the selected module at the moment it is used, so test modules imported
before the option was read still use the right library.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

LIBRARIES = ("httpx", "httpx2")
_selected: ModuleType = importlib.import_module("httpx")


def select(name: str) -> None:
    global _selected
    _selected = importlib.import_module(name)


def selected() -> str:
    """``"httpx"`` or ``"httpx2"``."""
    return _selected.__name__


class _Selected:
    """Forwards attribute access to the selected library module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_selected, name)

    def __repr__(self) -> str:
        return f"<the suite's HTTP library: {_selected.__name__}>"


httpx: Any = _Selected()
