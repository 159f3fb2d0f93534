"""aiohttp web: the application's ``AsyncSyncClient`` lives on the application.

``cleanup_ctx`` opens it when the application starts and closes it when it stops; handlers
read it from ``request.app[CODAT]``. Every request shares its connection pool and limits.

Install and run::

    pip install codat-commerce-async aiohttp
    CODAT_API_KEY=... python examples/aiohttp_app.py    # http://localhost:8080
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from codat_commerce_async import (
    APIStatusError,
    AsyncSyncClient,
    BulkResult,
    CodatError,
    NotFoundError,
    RateLimitError,
)

CODAT = web.AppKey("codat", AsyncSyncClient)
"""Where the application keeps its client."""

MAX_BULK = 10_000


def create_app(client_factory: Callable[[], AsyncSyncClient] = AsyncSyncClient) -> web.Application:
    """The application; ``client_factory`` builds its client (default: from the environment)."""

    async def codat_client(app: web.Application) -> AsyncIterator[None]:
        async with client_factory() as client:
            app[CODAT] = client
            yield  # the application runs here

    app = web.Application()
    app.cleanup_ctx.append(codat_client)
    app.router.add_post("/companies/{company_id}/sync", trigger_sync)
    app.router.add_get("/companies/{company_id}/syncs/latest", latest_sync)
    app.router.add_post("/syncs", trigger_many)
    return app


def _company(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["company_id"])
    except ValueError:
        raise web.HTTPUnprocessableEntity(text="company_id must be a UUID") from None


def _error(exc: CodatError) -> web.HTTPException:
    if isinstance(exc, NotFoundError):
        return web.HTTPNotFound(text="unknown company")
    if isinstance(exc, RateLimitError):
        after = f"{exc.retry_after:.0f}" if exc.retry_after else "60"
        return web.HTTPServiceUnavailable(text="rate limited", headers={"Retry-After": after})
    detail = {
        "error": type(exc).__name__,
        "codat_status": exc.status_code if isinstance(exc, APIStatusError) else None,
        "idempotency_key": getattr(exc, "idempotency_key", None),
    }
    return web.HTTPBadGateway(text=json.dumps(detail), content_type="application/json")


async def trigger_sync(request: web.Request) -> web.Response:
    """``POST /companies/{company_id}/sync``: trigger one sync (body: ``{"sync_to": ...}``)."""
    company = _company(request)
    args = await request.json() if request.can_read_body else {}
    try:
        summary = await request.app[CODAT].sync.request_sync(
            company,
            sync_to=args.get("sync_to"),
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
    except ValueError as exc:  # a bad date or key: nothing was sent
        raise web.HTTPUnprocessableEntity(text=str(exc)) from exc
    except CodatError as exc:
        raise _error(exc) from exc
    return web.json_response(
        {
            "company_id": str(company),
            "sync_id": summary.commerce_sync_id,
            "status_code": summary.sync_status_code,
        },
        status=202,
    )


async def latest_sync(request: web.Request) -> web.Response:
    """``GET /companies/{company_id}/syncs/latest``: the company's latest sync."""
    company = _company(request)
    try:
        status = await request.app[CODAT].sync.get_latest_sync(company)
    except CodatError as exc:
        raise _error(exc) from exc
    return web.json_response(
        {
            "sync_id": status.sync_id,
            "status_code": status.sync_status_code,
            "finished": not status.is_in_progress,
        }
    )


def _line(result: BulkResult) -> bytes:
    line = {
        "company_id": result.company_id,
        "ok": result.ok,
        "sync_id": result.sync_id,
        "error": type(result.error).__name__ if result.error is not None else None,
    }
    return json.dumps(line).encode() + b"\n"


async def trigger_many(request: web.Request) -> web.StreamResponse:
    """``POST /syncs``: trigger many (body: ``{"company_ids": [...]}``), streaming NDJSON."""
    body = await request.json()
    ids = body.get("company_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_BULK:
        raise web.HTTPUnprocessableEntity(text=f"company_ids: a list of 1 to {MAX_BULK} ids")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    # The handler owns the run: if the client goes away, the failing write (or aiohttp
    # cancelling the handler) leaves the block, which cancels what is still in flight.
    async with request.app[CODAT].sync.request_sync_many(ids) as results:
        async for result in results:
            await response.write(_line(result))
    await response.write_eof()
    return response


if __name__ == "__main__":
    web.run_app(create_app())
