"""Raw ``httpx.AsyncClient`` (or ``httpx2.AsyncClient``) + pydantic validation, with a
configurable pool size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ._harness import BODY, AsyncCall, AsyncFactory, Options, sync_path, wire_headers
from ._model import SyncSummary


def factory(pool: int, transport: Any = None, library: Any = httpx) -> AsyncFactory:
    """A client factory with ``pool`` connections (or over ``transport``); ``library`` is
    the ``httpx`` or ``httpx2`` module."""

    @asynccontextmanager
    async def open_client(opts: Options) -> AsyncIterator[AsyncCall]:
        limits = library.Limits(max_connections=pool, max_keepalive_connections=pool)
        async with library.AsyncClient(
            base_url=opts.url, limits=limits, timeout=30.0, transport=transport
        ) as http:

            async def call(company_id: str) -> bool:
                response = await http.post(
                    sync_path(company_id), content=BODY, headers=wire_headers()
                )
                if response.status_code != 200:
                    return False
                SyncSummary.model_validate_json(response.content)
                return True

            yield call

    return open_client
