"""FastAPI: one ``AsyncSyncClient`` per application, shared by every request.

- The client is opened and closed in the lifespan handler and handed to routes through a
  dependency (``Codat``), so every request shares one connection pool and one set of limits.
- ``POST /companies/{company_id}/sync`` triggers one sync. An ``Idempotency-Key`` header from
  your caller is passed on to Codat, so a caller retrying your endpoint never starts a second
  sync either, and gets the first answer back: a retry that overlaps the first request waits
  for it (in this process the client shares the first call's answer; from another process
  Codat's 409 "in progress" is waited out). Only if the first is still running at the call's
  deadline does the caller get a 409 with ``Retry-After``: retry with the same key.
- ``POST /syncs`` triggers many (``client.sync.request_sync_many``) and streams one NDJSON
  line per company as each finishes. If the caller goes away, what is still in flight is
  cancelled and no further attempt starts; the shared client carries on serving others.

Install and run::

    pip install codat-commerce-async fastapi uvicorn
    CODAT_API_KEY=... uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from pydantic import AwareDatetime, BaseModel, Field
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from codat_commerce_async import (
    APIStatusError,
    APITimeoutError,
    AsyncSyncClient,
    BulkResult,
    CodatError,
    ConflictError,
    NotFoundError,
    RateLimitError,
)

router = APIRouter()


# -- the client: one per application -------------------------------------------------------


def create_app(client_factory: Callable[[], AsyncSyncClient] = AsyncSyncClient) -> FastAPI:
    """The application; ``client_factory`` builds its client (default: from the environment,
    ``CODAT_API_KEY`` and ``CODAT_BASE_URL``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client_factory() as client:
            app.state.codat = client
            yield
        # Leaving the block closed the pool; requests no longer arrive by now.

    app = FastAPI(title="Codat sync triggers", lifespan=lifespan)
    app.include_router(router)
    return app


async def get_codat(request: Request) -> AsyncSyncClient:
    """The dependency handing the application's client to a route (async: FastAPI would
    run a plain ``def`` dependency in its thread pool, a hop per request for nothing)."""
    client: AsyncSyncClient = request.app.state.codat
    return client


Codat = Annotated[AsyncSyncClient, Depends(get_codat)]


# -- one company ---------------------------------------------------------------------------


class SyncRequest(BaseModel):
    sync_to: AwareDatetime | None = None
    """Sync up to this moment (default: now). Must carry a time zone."""


class SyncStarted(BaseModel):
    company_id: str
    sync_id: str | None
    status: str | None
    status_code: int | None
    idempotency_key: str | None


@router.post("/companies/{company_id}/sync", status_code=202)
async def trigger_sync(
    company_id: uuid.UUID,
    codat: Codat,
    body: SyncRequest | None = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> SyncStarted:
    """Trigger one company's sync."""
    try:
        raw = await codat.sync.with_raw_response.request_sync(
            company_id,
            sync_to=body.sync_to if body is not None else None,
            idempotency_key=idempotency_key,
        )
    except ValueError as exc:  # a malformed Idempotency-Key: nothing was sent
        raise HTTPException(422, str(exc)) from exc
    except CodatError as exc:
        raise http_error(exc) from exc
    summary = raw.parsed
    return SyncStarted(
        company_id=str(company_id),
        sync_id=summary.commerce_sync_id,
        status=summary.sync_status,
        status_code=summary.sync_status_code,
        idempotency_key=raw.idempotency_key,
    )


def http_error(exc: CodatError) -> HTTPException:
    """What your callers see when Codat said no: never the key, always what to quote."""
    key = getattr(exc, "idempotency_key", None)
    if isinstance(exc, NotFoundError):
        return HTTPException(404, "unknown company")
    if isinstance(exc, RateLimitError):
        after = f"{exc.retry_after:.0f}" if exc.retry_after else "60"
        return HTTPException(503, "rate limited by Codat", headers={"Retry-After": after})
    if isinstance(exc, ConflictError) and key is not None:
        # The first request with this key was still running at the deadline: ask again.
        detail = {"error": "still in progress", "idempotency_key": key}
        return HTTPException(409, detail, headers={"Retry-After": "5"})
    if isinstance(exc, APIStatusError):
        detail = {
            "codat_status": exc.status_code,
            "correlation_id": exc.correlation_id,
            "idempotency_key": key,
        }
        return HTTPException(502, detail)
    if isinstance(exc, APITimeoutError):
        # The sync may have started: retry with the same Idempotency-Key to find out.
        return HTTPException(504, {"error": "Codat timed out", "idempotency_key": key})
    return HTTPException(502, {"error": type(exc).__name__, "idempotency_key": key})


# -- many companies, streamed ------------------------------------------------------------


class BulkRequest(BaseModel):
    company_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000)
    sync_to: AwareDatetime | None = None


def result_line(result: BulkResult) -> dict[str, Any]:
    """One NDJSON line: the outcome for one company."""
    line: dict[str, Any] = {
        "company_id": result.company_id,
        "ok": result.ok,
        "sync_id": result.sync_id,
        "idempotency_key": result.idempotency_key,
        "attempts": result.attempts,
    }
    if result.error is not None:
        line["error"] = type(result.error).__name__
        line["codat_status"] = getattr(result.error, "status_code", None)
    return line


class BulkSyncResponse(Response):
    """Streams one NDJSON line per company as each trigger finishes.

    Not a ``StreamingResponse`` over an async generator: the run's task group must be
    entered and left by the same task, and a generator suspended at ``yield`` inside it
    breaks that when the client disconnects. Here one coroutine owns the run, writes
    each line, and listens for the disconnect itself (so it works on any ASGI server,
    whichever ASGI spec version it speaks).
    """

    media_type = "application/x-ndjson"

    def __init__(
        self, client: AsyncSyncClient, company_ids: Sequence[uuid.UUID], sync_to: datetime | None
    ) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers()  # no Content-Length: the body is streamed
        self.client = client
        self.company_ids = company_ids
        self.sync_to = sync_to

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        disconnected = False
        async with anyio.create_task_group() as tg:

            async def watch_disconnect() -> None:
                nonlocal disconnected
                while (await receive())["type"] != "http.disconnect":
                    pass
                disconnected = True
                tg.cancel_scope.cancel()  # stops the run: in-flight calls are cancelled

            tg.start_soon(watch_disconnect)
            run = self.client.sync.request_sync_many(self.company_ids, sync_to=self.sync_to)
            async with run as results:
                async for result in results:
                    body = json.dumps(result_line(result)).encode() + b"\n"
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            tg.cancel_scope.cancel()  # all done: stop listening
        if not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


@router.post(
    "/syncs",
    responses={
        200: {"description": "One JSON line per company", "content": {"application/x-ndjson": {}}}
    },
)
async def trigger_many(body: BulkRequest, codat: Codat) -> Response:
    """Trigger many companies' syncs; the response streams their outcomes as NDJSON."""
    return BulkSyncResponse(codat, body.company_ids, body.sync_to)


app = create_app()
