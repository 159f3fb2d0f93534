"""Fixtures for the transport tests: the suite's socket server, routed by path."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator

import pytest

from .._sockets import (
    SUMMARY_BYTES,
    MisbehavingServer,
    Seen,
    Step,
    answer,
    drip,
    hang,
    reset,
    stream,
    truncate,
)

GZIP_BODY = gzip.compress(SUMMARY_BYTES)


@pytest.fixture
def release_stream() -> threading.Event:
    """Set it to let ``/stream`` send the second half of its body."""
    return threading.Event()


@pytest.fixture
def server(release_stream: threading.Event) -> Iterator[MisbehavingServer]:
    routes = {
        "/gzip": answer(200, GZIP_BODY, {"Content-Encoding": "gzip"}),
        "/redirect": answer(302, b"", {"Location": "/companies/x/sync/commerce/latest"}),
        "/hang": hang(),
        "/reset": reset(),
        "/truncated": truncate(declared=100, send=10),
        "/slow-body": drip(b"{}" + b" " * 8, interval=3600),
        "/stream": stream(release_stream),
    }

    def route(seen: Seen) -> Step:
        first = "/" + seen.path.split("?")[0].split("/")[1]  # "/hang/companies/..."
        if first == "/echo-headers":
            return answer(200, json.dumps(seen.raw_headers).encode())
        return routes.get(first, answer())

    with MisbehavingServer(default=route) as srv:
        yield srv
