"""Raw ``aiohttp.ClientSession`` (64 connections), with or without pydantic validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from ._harness import BODY, AsyncCall, AsyncFactory, Options, sync_path, wire_headers
from ._model import SyncSummary


def factory(*, validate: bool, limit: int = 64) -> AsyncFactory:
    """A client factory; ``validate`` runs ``SyncSummary.model_validate_json`` on bodies."""

    @asynccontextmanager
    async def open_client(opts: Options) -> AsyncIterator[AsyncCall]:
        connector = aiohttp.TCPConnector(limit=limit)
        timeout = aiohttp.ClientTimeout(total=30.0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def call(company_id: str) -> bool:
                url = opts.url + sync_path(company_id)
                async with session.post(url, data=BODY, headers=wire_headers()) as response:
                    body = await response.read()
                    if response.status != 200:
                        return False
                if validate:
                    SyncSummary.model_validate_json(body)
                return True

            yield call

    return open_client
