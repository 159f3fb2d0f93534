"""FastAPI: receive Codat's webhooks; the daily-quota events pause and resume bulk runs.

- ``POST /webhooks/codat`` verifies each delivery (Standard Webhooks signature over the raw
  body, 5 minutes' timestamp tolerance) with ``codat_commerce_async.webhooks.unwrap`` and
  answers 400 to anything that does not verify, so Codat's retries never act on a forgery.
- ``connection.deleted``: the company is added to ``app.state.stopped`` (skip it from now on).
- ``client.rateLimit.reached`` / ``client.rateLimit.reset``: ``webhooks.apply_rate_limit``
  pauses this application's bulk runs until the quota's ``expiryDate`` (or the reset).
- Any other event is acknowledged (204) and ignored.
- ``GET /webhooks/codat/state`` shows whether bulk runs are paused and which companies stopped.

Install and run::

    pip install 'codat-commerce-async[webhooks]' fastapi uvicorn
    CODAT_API_KEY=... CODAT_WEBHOOK_SECRET=whsec_... uvicorn examples.fastapi_webhooks:app

Try it without Codat: run ``codat-commerce fake-server --accept-any-auth`` and this app
(``CODAT_BASE_URL=http://127.0.0.1:8000 CODAT_API_KEY=x``), then have the fake deliver one::

    curl -X POST http://127.0.0.1:8000/_fake/webhooks -d '{"url":
      "http://127.0.0.1:8001/webhooks/codat", "secret": "whsec_...",
      "eventType": "client.rateLimit.reached", "payload": {"dailyQuota": 1000,
      "quotaRemaining": 0, "expiryDate": "2030-01-01T00:00:00Z"}}'
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.responses import Response

from codat_commerce_async import AsyncSyncClient, webhooks


def create_app(
    client_factory: Callable[[], AsyncSyncClient] = AsyncSyncClient,
    secret: str | None = None,
) -> FastAPI:
    """The application; ``secret`` defaults to ``CODAT_WEBHOOK_SECRET``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.secret = secret or os.environ["CODAT_WEBHOOK_SECRET"]
        app.state.stopped = set()
        async with client_factory() as client:
            app.state.codat = client
            yield

    app = FastAPI(title="Codat webhooks", lifespan=lifespan)

    @app.post("/webhooks/codat", status_code=204)
    async def receive(request: Request) -> Response:
        body = await request.body()  # the raw bytes: the signature covers them exactly
        try:
            event = webhooks.unwrap(body, request.headers, secret=request.app.state.secret)
        except webhooks.WebhookVerificationError as exc:
            raise HTTPException(400, f"webhook not verified ({exc.reason})") from None
        except webhooks.WebhookError as exc:
            raise HTTPException(400, str(exc)) from None
        if isinstance(event, webhooks.ConnectionDeletedEvent) and event.company_id:
            request.app.state.stopped.add(event.company_id)
        webhooks.apply_rate_limit(request.app.state.codat, event)
        return Response(status_code=204)

    @app.get("/webhooks/codat/state")
    async def state(request: Request) -> dict[str, Any]:
        client: AsyncSyncClient = request.app.state.codat
        return {
            "bulk_runs_paused": client.bulk_runs_paused,
            "stopped_companies": sorted(request.app.state.stopped),
        }

    return app


app = create_app()
