"""The fake Codat ASGI application: routing, auth, the request pipeline and the handlers."""

from __future__ import annotations

import base64
import hmac
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

import anyio

from .._config import DEFAULT_BASE_URL
from .._http_library import HttpLibraryName, default_library
from ._control import CONTROL_PREFIX, control_response, ledger_json
from ._faults import (
    ConnectionDropped,
    Fault,
    FaultPlan,
    FaultStage,
    RequestInfo,
    combine,
    non_defaults,
)
from ._ledger import DEFAULT_TTL, IdempotencyLedger, fingerprint
from ._ratelimit import RateLimiter, RateLimits
from ._respx import route_to_fake
from ._state import FakeState, RequestRecord, StartedSync, SyncOperation, SyncOutcome
from ._transport import fake_transport
from ._webhooks import send_webhook
from ._wire import (
    Response,
    ValidationItem,
    canonical_uuid,
    error_response,
    format_retry_after,
    format_timestamp,
    header_values,
    html_response,
    http_date,
    json_response,
    parse_timestamp,
)

if TYPE_CHECKING:
    from .._types import AsyncBaseTransport, AsyncClient
    from .._types import Response as HttpResponse

__all__ = ["DEFAULT_API_KEY", "FakeCodat"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_API_KEY = "fake-api-key"
REDACTED = "[redacted]"

# Seen when a company has never synced successfully: stands in for the start date of the
# company's sync configuration, relative to the fake's start time.
_CONFIG_START_BEFORE = timedelta(days=30)

_FAKE_INTEGRATION_ID = "f6b1fa2e-1a4e-4c31-8a4b-3c9b7c0e5a01"
_FAKE_SOURCE_ID = "0b8c7f5e-7d7a-4f0e-9d52-1f5a2b6c9e11"

_ERROR_TEXT = {
    500: "An internal server error occurred. Please try again later.",
    502: "Bad gateway.",
    503: "The service is temporarily offline for maintenance. Please try again later.",
    504: "Gateway timeout.",
    429: "You have made too many requests in a given amount of time; please retry later.",
}


@dataclass(frozen=True)
class _Route:
    operation: str
    method: str
    raw_company: str
    sync_ref: str | None = None


def _match(path: str) -> _Route | None:
    parts = path.split("/")
    if parts[0] != "":
        return None
    parts = parts[1:]
    if (
        len(parts) == 6
        and parts[:2] == ["meta", "companies"]
        and parts[3:] == ["sync", "commerce", "status"]
    ):
        return _Route("get-sync-status", "GET", parts[2])
    if len(parts) == 5 and parts[0] == "companies" and parts[2:] == ["sync", "commerce", "latest"]:
        return _Route("request-sync", "POST", parts[1])
    if (
        len(parts) == 6
        and parts[:2] == ["meta", "companies"]
        and parts[3:] == ["sync", "commerce", "historic"]
    ):
        return _Route("request-sync-for-date-range", "POST", parts[2])
    if (
        len(parts) == 7
        and parts[0] == "companies"
        and parts[2:5] == ["sync", "commerce", "syncs"]
        and parts[6] == "status"
    ):
        literal = {
            "latest": "get-latest-sync",
            "lastSuccessful": "get-last-successful-sync",
            "list": "list-syncs",
        }
        ref = parts[5]
        if ref in literal:
            return _Route(literal[ref], "GET", parts[1])
        return _Route("get-sync-by-id", "GET", parts[1], ref)
    return None


@dataclass
class _Exchange:
    """Mutable per-request context."""

    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    received_at: float
    route: _Route | None
    company_id: str | None
    idempotency_keys: list[str]
    faults: list[Fault] = field(default_factory=list)
    replayed: bool = False
    client_ip: str | None = None

    @property
    def operation(self) -> str | None:
        return self.route.operation if self.route else None

    @property
    def idempotency_key(self) -> str | None:
        return self.idempotency_keys[0] if self.idempotency_keys else None

    def info(self) -> RequestInfo:
        return RequestInfo(self.method, self.path, self.company_id, self.operation)


class _Reservation:
    """Holds an idempotency key until a response is settled; releases it otherwise."""

    def __init__(self, ledger: IdempotencyLedger | None, key: str, token: object) -> None:
        self._ledger = ledger
        self._key = key
        self._token = token
        self._open = ledger is not None

    def settle(self, response: Response | None) -> None:
        if self._open and self._ledger is not None:
            self._open = False
            self._ledger.finish(self._key, self._token, response)

    def release(self) -> None:
        self.settle(None)


_NO_RESERVATION = _Reservation(None, "", None)


class FakeCodat:
    """An in-memory Codat Sync for Commerce API, as a pure ASGI 3 application.

    Parameters:
        api_key: the key whose ``Basic base64(key)`` header is accepted (see
            :attr:`auth_header`).
        accept_any_auth: accept any non-empty ``Authorization`` header instead.
        companies: None (default) makes every well-formed UUID a known company; an iterable
            switches to strict mode where only these (and :meth:`add_company`) exist.
        sync_duration: seconds a sync reports "in progress" (1000) before its outcome.
        sync_durations: draws each new sync's duration instead: called with the company
            id, returns seconds, e.g. ``lambda company: rng.expovariate(1 / 240)`` with a
            seeded ``rng = random.Random(7)``, or a lookup of per-company durations.
            A ``set_outcome(..., duration=)`` still wins.
        sync_id_lookup: if True (default) ``SyncSummary.commerceSyncId`` is also the
            ``syncId`` of the status endpoints, so ``GET .../syncs/{commerceSyncId}/status``
            works. If False the status ``syncId`` is a different uuid and the by-id endpoint
            answers 404 for a ``commerceSyncId``.
        rate_limits: quota and per-company concurrency limits (all off by default).
        faults: the :class:`FaultPlan`; by default an empty one seeded with ``seed``.
        clock: monotonic seconds; inject a :class:`ManualClock` to move time by hand.
        sleep: how latency faults wait (``anyio.sleep``); tests may inject a gate.
        start_time: wall time at clock start (default: now, UTC); timestamps in responses
            are ``start_time`` plus the clock's progress, so they follow a manual clock.
        idempotency_ttl: seconds a stored idempotent response is replayed (90 minutes).
        data_connections: include one commerce data connection in ``SyncSummary``.

    Malformed company or sync ids (not a hyphenated UUID) answer 404, as an unmatched
    route does on Codat's ASP.NET front end; 400 is not declared for the status GETs.
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        accept_any_auth: bool = False,
        companies: Iterable[str] | None = None,
        sync_duration: float = 0.0,
        sync_durations: Callable[[str], float] | None = None,
        sync_id_lookup: bool = True,
        rate_limits: RateLimits | None = None,
        faults: FaultPlan | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        start_time: datetime | None = None,
        idempotency_ttl: float = DEFAULT_TTL,
        data_connections: bool = True,
    ) -> None:
        self.api_key = api_key
        self.accept_any_auth = accept_any_auth
        self.sync_id_lookup = sync_id_lookup
        self.data_connections = data_connections
        self.faults = faults if faults is not None else FaultPlan(seed=seed)
        self._clock = clock
        self._sleep = sleep
        self._clock_origin = clock()
        start = start_time or datetime.now(timezone.utc)
        self._wall_origin = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
        canonical = [_require_uuid(c) for c in companies] if companies is not None else None
        self._state = FakeState(canonical, sync_duration)
        self._state.durations = sync_durations
        self._ledger = IdempotencyLedger(clock, idempotency_ttl)
        self._limiter = RateLimiter(rate_limits or RateLimits(), clock, self._to_wall)

    # configuration ---------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        """The injected monotonic clock every timing decision reads."""
        return self._clock

    @property
    def auth_header(self) -> str:
        """The ``Authorization`` value the fake accepts: ``Basic base64(api_key)``."""
        return "Basic " + base64.b64encode(self.api_key.encode()).decode("ascii")

    @property
    def rate_limits(self) -> RateLimits:
        """Current rate limits; assign a new :class:`RateLimits` to change them."""
        return self._limiter.limits

    @rate_limits.setter
    def rate_limits(self, value: RateLimits) -> None:
        self._limiter.limits = value

    @property
    def sync_duration(self) -> float:
        """Default seconds a new sync stays in progress."""
        return self._state.default_duration

    @sync_duration.setter
    def sync_duration(self, value: float) -> None:
        self._state.default_duration = value

    def add_company(self, company_id: str) -> str:
        """Make ``company_id`` known (needed in strict mode); returns its canonical form."""
        canonical = _require_uuid(company_id)
        self._state.add_company(canonical)
        return canonical

    def mark_unknown(self, company_id: str) -> str:
        """Make every endpoint answer 404 for ``company_id``; returns its canonical form."""
        canonical = _require_uuid(company_id)
        self._state.mark_unknown(canonical)
        return canonical

    def set_outcome(
        self,
        company_id: str | None,
        status_code: int = 2000,
        *,
        sync_status: str | None = None,
        error_message: str | None = None,
        exception_message: str | None = None,
        data_pushed: bool | None = None,
        duration: float | None = None,
    ) -> SyncOutcome:
        """Set how syncs started from now on end, for one company or (None) by default.

        ``status_code`` is Codat's terminal ``syncStatusCode`` (2000, 2040, 4000, 5080, ...);
        the texts default to Codat-like ones. ``duration`` overrides ``sync_duration``.
        """
        outcome = SyncOutcome.for_code(
            status_code,
            sync_status=sync_status,
            error_message=error_message,
            exception_message=exception_message,
            data_pushed=data_pushed,
            duration=duration,
        )
        target = _require_uuid(company_id) if company_id is not None else None
        self._state.set_outcome(target, outcome)
        return outcome

    # inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> tuple[RequestRecord, ...]:
        """Every request received so far, in the order their responses were decided."""
        return self._state.records()

    @property
    def syncs(self) -> tuple[StartedSync, ...]:
        """Every sync really started, oldest first (replays start nothing)."""
        return self._state.syncs()

    def syncs_started(self, company_id: str | None = None) -> int:
        """How many syncs were started, for one company or in total."""
        company = _require_uuid(company_id) if company_id is not None else None
        return self._state.sync_count(company)

    def assert_no_duplicate_syncs(self) -> None:
        """Fail if one ``Idempotency-Key`` started more than one sync."""
        duplicates = self._state.duplicate_keys()
        if duplicates:
            key, (first, second, *_) = next(iter(duplicates.items()))
            raise AssertionError(
                f"Idempotency-Key {key!r} started syncs {first.sync_id} and {second.sync_id}"
            )

    async def send_webhook(
        self,
        url: str,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        secret: str,
        event_id: str | None = None,
        timestamp: datetime | None = None,
        transport: AsyncBaseTransport | None = None,
    ) -> HttpResponse:
        """POST a Codat webhook (``{id, eventType, generatedDate, payload}``), signed with
        ``secret`` the way Codat's Svix signs it, to ``url``; return the response.

        ``transport`` (e.g. ``httpx.ASGITransport(app=your_app)``, or an httpx2 one)
        delivers it in-process, with the transport's library;
        ``timestamp`` signs it as of another time (to test replay protection). Needs the
        ``webhooks`` extra. Also over HTTP: ``POST /_fake/webhooks``.
        """
        return await send_webhook(
            url,
            event_type,
            payload,
            secret=secret,
            event_id=event_id,
            timestamp=timestamp,
            transport=transport,
        )

    def ledger(self) -> dict[str, Any]:
        """What ``GET /_fake/ledger`` answers: requests received and syncs started, in
        total and per company (with sync ids and idempotency keys), plus any
        idempotency key that started more than one sync."""
        return ledger_json(self)

    def in_flight(self, company_id: str | None = None) -> int:
        """Requests being processed now (past auth), for one company or in total."""
        company = _require_uuid(company_id) if company_id is not None else None
        return self._limiter.in_flight(company)

    def now(self) -> datetime:
        """The fake's current UTC wall time (follows the injected clock)."""
        return self._to_wall(self._clock())

    def reset(self) -> dict[str, Any]:
        """Forget requests, syncs, outcomes, idempotency keys and rate-limit counters, and
        put the faults back to their baseline (see :meth:`FaultPlan.set_baseline`: the
        fake-server's ``--latency`` and ``--fail-rate``; none otherwise). Settings stay.

        Returns what ``POST /_fake/reset`` answers: ``{"forgot": {counts}, "kept":
        {"faults": [...], "sync_duration": s, "rate_limits": {...}}}``.
        """
        forgot: dict[str, int] = self._state.reset()
        forgot["idempotency_keys"] = self._ledger.clear()
        forgot["faults"] = self.faults.reset()
        self._limiter.reset()
        kept = {
            "faults": self.faults.baseline(),
            "sync_duration": self.sync_duration,
            "rate_limits": non_defaults(self.rate_limits),
        }
        return {"forgot": forgot, "kept": kept}

    # clients ---------------------------------------------------------------------------

    def transport(self, *, http_library: HttpLibraryName | None = None) -> AsyncBaseTransport:
        """A transport calling this app in-process (drops become ``RemoteProtocolError``):
        a :class:`FakeTransport` for httpx, or its httpx2 twin with
        ``http_library="httpx2"``. Default: ``CODAT_HTTP_LIBRARY``, else httpx."""
        name = http_library if http_library is not None else default_library().name
        return cast("AsyncBaseTransport", fake_transport(self, name))

    def client(
        self,
        *,
        authenticated: bool = True,
        http_library: HttpLibraryName | None = None,
        **kwargs: Any,
    ) -> AsyncClient:
        """An ``httpx.AsyncClient`` (``httpx2.AsyncClient`` with ``http_library="httpx2"``)
        on :meth:`transport` with base URL ``http://localhost``.

        With ``authenticated`` the valid ``Authorization`` header is preset. Extra keyword
        arguments go to the ``AsyncClient``.
        """
        transport = self.transport(http_library=http_library)
        library = cast("Any", transport)._library
        headers = library.Headers(kwargs.pop("headers", None))
        if authenticated:
            headers.setdefault("Authorization", self.auth_header)
        kwargs.setdefault("base_url", "http://localhost")
        return cast(
            "AsyncClient", library.AsyncClient(transport=transport, headers=headers, **kwargs)
        )

    def mock(self, respx_mock: Any, *, base_url: str = DEFAULT_BASE_URL) -> Any:
        """Route a respx mock's requests under ``base_url`` (Codat's by default) to this
        fake, in-process: ``codat_fake.mock(respx_mock)`` with respx's fixture. Returns the
        respx route. respx mocks httpx only, so this serves clients on httpx."""
        return route_to_fake(self, respx_mock, base_url)

    # ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"FakeCodat serves HTTP only, not {scope['type']!r}")
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its whole request
        if scope["path"].startswith(CONTROL_PREFIX):
            # Not part of Codat's API: never recorded, never faulted or rate limited.
            method = scope["method"].upper()
            await _send(send, await control_response(self, method, scope["path"], body))
            return
        exchange = self._exchange(scope, body)
        response: Response | None = None
        try:
            response = await self._handle(exchange)
            if response is not None:
                # Date: the fake's clock, which X-Rate-Limit-Reset is read against.
                stamp = (("date", http_date(self._to_wall(self._clock()))),)
                response = response.with_headers(self._limiter.headers(self._to_wall) + stamp)
        finally:
            self._record(exchange, response)
        if response is None:
            raise ConnectionDropped
        await _send(send, response)

    def _exchange(self, scope: Scope, body: bytes) -> _Exchange:
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        path = path.split("?", 1)[0]
        headers = list(scope.get("headers") or [])
        route = _match(path)
        return _Exchange(
            method=scope["method"].upper(),
            path=path,
            query=bytes(scope.get("query_string") or b"").decode("latin-1"),
            headers=headers,
            body=body,
            received_at=self._clock(),
            route=route,
            company_id=canonical_uuid(route.raw_company) if route else None,
            idempotency_keys=header_values(headers, b"idempotency-key"),
            client_ip=_client_ip(scope),
        )

    def _record(self, ex: _Exchange, response: Response | None) -> None:
        # Header names interned: one copy of "idempotency-key" for all records, not one each.
        headers = tuple(
            (
                sys.intern(name.decode("latin-1").lower()),
                REDACTED if name.lower() == b"authorization" else value.decode("latin-1"),
            )
            for name, value in ex.headers
        )
        dropped = response is None and any(f.kind == "drop" for f in ex.faults)
        self._state.record(
            RequestRecord(
                method=ex.method,
                path=ex.path,
                query=ex.query,
                headers=headers,
                body=ex.body,
                idempotency_key=ex.idempotency_key,
                company_id=ex.company_id,
                operation=ex.operation,
                received_at=ex.received_at,
                status=response.status if response is not None else None,
                replayed=ex.replayed,
                dropped=dropped,
                faults=tuple(ex.faults),
            )
        )

    # pipeline --------------------------------------------------------------------------

    async def _handle(self, ex: _Exchange) -> Response | None:
        """Run one request through edge, routing, auth, limits, ledger and handler."""
        struck, fault = await self._strike("edge", ex)
        if struck:
            return self._fault_response(fault) if fault is not None else None
        if (rejected := self._check_route(ex)) is not None:
            return rejected
        if not self._authorized(ex):
            return error_response(401, "Unauthorized")
        rejection = self._limiter.acquire(ex.company_id, ex.client_ip)
        if rejection is not None:
            return error_response(
                429,
                rejection.reason,
                headers=(("retry-after", format_retry_after(rejection.retry_after)),),
            )
        try:
            return await self._idempotent(ex)
        finally:
            self._limiter.release(ex.company_id)

    async def _strike(self, stage: FaultStage, ex: _Exchange) -> tuple[bool, Fault | None]:
        """Apply the faults drawn for ``stage``: (ended, error fault or None for a drop)."""
        hits = self.faults.draw(stage, ex.info())
        if not hits:
            return False, None
        ex.faults.extend(hits)
        delay, terminal = combine(hits)
        if delay > 0:
            await self._sleep(delay)
        if terminal is None:
            return False, None
        return True, terminal if terminal.kind == "error" else None

    def _check_route(self, ex: _Exchange) -> Response | None:
        route = ex.route
        if route is None:
            return error_response(404, f"No resource was found at {ex.path}")
        if ex.method != route.method:
            return error_response(
                405,
                f"The method {ex.method} is not allowed for this resource.",
                headers=(("allow", route.method),),
            )
        if ex.company_id is None:
            return error_response(404, f"No company was found with ID {route.raw_company}")
        if route.sync_ref is not None and canonical_uuid(route.sync_ref) is None:
            return error_response(404, f"No sync was found with ID {route.sync_ref}")
        return None

    def _authorized(self, ex: _Exchange) -> bool:
        values = header_values(ex.headers, b"authorization")
        if not values or not values[0].strip():
            return False
        if self.accept_any_auth:
            return True
        scheme, _, token = values[0].strip().partition(" ")
        expected = base64.b64encode(self.api_key.encode()).decode("ascii")
        return scheme.lower() == "basic" and hmac.compare_digest(
            token.strip().encode(), expected.encode()
        )

    async def _idempotent(self, ex: _Exchange) -> Response | None:
        if ex.method != "POST" or not ex.idempotency_keys:
            return await self._app_stages(ex, _NO_RESERVATION)
        if len(ex.idempotency_keys) > 1:
            return _invalid("Idempotency-Key", "Send exactly one Idempotency-Key header.")
        key = ex.idempotency_keys[0]
        if not key.strip():
            return _invalid("Idempotency-Key", "The Idempotency-Key header is empty.")
        target = ex.path + ("?" + ex.query if ex.query else "")
        decision = self._ledger.begin(key, fingerprint(ex.method, target, ex.body))
        if decision.action == "replay":
            ex.replayed = True
            return decision.response
        if decision.action == "in_progress":
            return error_response(
                409, "A request with this Idempotency-Key is still being processed."
            )
        if decision.action == "mismatch":
            return error_response(
                422, "This Idempotency-Key was already used for a different request."
            )
        reservation = _Reservation(self._ledger, key, decision.token)
        try:
            return await self._app_stages(ex, reservation)
        finally:
            reservation.release()  # no-op once settled; frees the key on cancellation

    async def _app_stages(self, ex: _Exchange, reservation: _Reservation) -> Response | None:
        struck, fault = await self._strike("before_sync", ex)
        if struck:
            if fault is None:
                return None  # dropped before any work: the reservation is released
            response = self._fault_response(fault)
            reservation.settle(response)
            return response

        response = self._dispatch(ex)

        hits = self.faults.draw("after_sync", ex.info())
        ex.faults.extend(hits)
        delay, terminal = combine(hits)
        if terminal is not None and terminal.kind == "error":
            response = self._fault_response(terminal)
        # Settle before the delay: the work is done whether or not the client waits for it.
        reservation.settle(response)
        if delay > 0:
            await self._sleep(delay)
        if terminal is not None and terminal.kind == "drop":
            return None
        return response

    def _fault_response(self, fault: Fault) -> Response:
        assert fault.status is not None
        headers: tuple[tuple[str, str], ...] = ()
        if fault.retry_after is not None:
            headers = (("retry-after", format_retry_after(fault.retry_after)),)
        if fault.body == "html":
            return html_response(fault.status, headers)
        if fault.body == "empty":
            return Response(fault.status, headers)
        message = fault.message or _ERROR_TEXT.get(fault.status, "The request failed.")
        return error_response(
            fault.status, message, can_be_retried=fault.can_be_retried, headers=headers
        )

    # handlers --------------------------------------------------------------------------

    def _dispatch(self, ex: _Exchange) -> Response:
        assert ex.route is not None
        assert ex.company_id is not None
        operation = ex.route.operation
        if operation == "request-sync":
            return self._request_sync(ex, ex.company_id)
        if operation == "request-sync-for-date-range":
            return self._request_sync_for_date_range(ex, ex.company_id)
        if not self._state.company_exists(ex.company_id):
            return _company_not_found(ex.company_id)
        return self._status(operation, ex.company_id, ex.route.sync_ref)

    def _request_sync(self, ex: _Exchange, company_id: str) -> Response:
        args, errors = _parse_body(ex.body, required=False)
        sync_to: datetime | None = None
        if not errors and args is not None:
            raw = args.get("syncTo")
            if raw is not None:
                sync_to, errors = _timestamp_field("syncTo", raw)
        if errors:
            return _validation_failed(errors)
        if not self._state.company_exists(company_id):
            return _company_not_found(company_id)
        now = self._clock()
        previous = self._state.last_successful(company_id, now)
        start = (
            previous.finish
            if previous
            else format_timestamp(self._wall_origin - _CONFIG_START_BEFORE)
        )
        window_start = parse_timestamp(start)
        until = sync_to or self._to_wall(now)
        if window_start is not None and until < window_start:
            # The spec: a sync runs "from the last successful sync up to syncTo"; re-syncing
            # an earlier period is the historic endpoint's job. Codat does not say what a
            # syncTo before that start does (or "now" before it, after a sync up to a
            # future syncTo); the fake infers an empty window at the start (nothing new to
            # sync) and never reports start after finish. See docs/testing.md.
            until = window_start
        finish = format_timestamp(until)
        return self._start(ex, company_id, "request-sync", start, finish, now)

    def _request_sync_for_date_range(self, ex: _Exchange, company_id: str) -> Response:
        args, errors = _parse_body(ex.body, required=True)
        start: datetime | None = None
        finish: datetime | None = None
        if not errors and args is not None:
            date_range = args.get("dateRange")
            if date_range is None:
                errors = [_required("dateRange")]
            elif not isinstance(date_range, dict):
                errors = [_wrong_type("dateRange", "an object")]
            else:
                for name in ("start", "finish"):
                    item = f"dateRange.{name}"
                    if date_range.get(name) is None:
                        errors.append(_required(item))
                        continue
                    parsed, problems = _timestamp_field(item, date_range[name])
                    errors.extend(problems)
                    if name == "start":
                        start = parsed
                    else:
                        finish = parsed
        if not errors and start is not None and finish is not None and start > finish:
            errors = [ValidationItem("dateRange", "start must not be after finish.", "DateRange")]
        if errors:
            return _validation_failed(errors)
        if not self._state.company_exists(company_id):
            return _company_not_found(company_id)
        assert start is not None
        assert finish is not None
        return self._start(
            ex,
            company_id,
            "request-sync-for-date-range",
            format_timestamp(start),
            format_timestamp(finish),
            self._clock(),
        )

    def _start(
        self,
        ex: _Exchange,
        company_id: str,
        operation: SyncOperation,
        start: str,
        finish: str,
        now: float,
    ) -> Response:
        previous = self._state.latest(company_id)
        sync = self._state.start_sync(
            company_id=company_id,
            operation=operation,
            idempotency_key=ex.idempotency_key,
            start=start,
            finish=finish,
            sync_utc=format_timestamp(self._to_wall(now)),
            now=now,
            separate_ids=not self.sync_id_lookup,
        )
        connections: list[dict[str, Any]] = []
        if self.data_connections:
            last_sync = previous[-1].sync_utc if previous else None
            connections.append(self._connection(company_id, last_sync))
        summary = {
            "syncDateRangeUtc": {"start": sync.start, "finish": sync.finish},
            "companyId": sync.company_id,
            "commerceSyncId": sync.commerce_sync_id,
            "syncStatusCode": 1000,
            "syncStatus": "Started",
            "errorMessage": None,
            "syncExceptionMessage": None,
            "syncUtc": sync.sync_utc,
            "dataConnections": connections,
            "dataPushed": False,
        }
        return json_response(200, summary)

    def _connection(self, company_id: str, last_sync: str | None) -> dict[str, Any]:
        connection_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-codat:{company_id}"))
        return {
            "id": connection_id,
            "integrationId": _FAKE_INTEGRATION_ID,
            "integrationKey": "fake",
            "sourceId": _FAKE_SOURCE_ID,
            "sourceType": "Commerce",
            "platformName": "Fake Commerce",
            "linkUrl": (
                f"https://link-api.codat.io/companies/{company_id}"
                f"/connections/{connection_id}/start"
            ),
            "status": "Linked",
            "lastSync": last_sync,
            "created": format_timestamp(self._wall_origin - _CONFIG_START_BEFORE),
            "dataConnectionErrors": [],
            "connectionInfo": None,
        }

    def _status(self, operation: str, company_id: str, sync_ref: str | None) -> Response:
        now = self._clock()
        if operation == "list-syncs":
            syncs = self._state.syncs(company_id)
            return json_response(200, [_status_json(s, now) for s in syncs])
        if operation == "get-sync-status":
            return self._sync_status(company_id, self._state.latest(company_id, 2), now)
        found: StartedSync | None
        if operation == "get-latest-sync":
            latest = self._state.latest(company_id)
            found = latest[-1] if latest else None
            missing = f"No syncs were found for company {company_id}"
        elif operation == "get-last-successful-sync":
            found = self._state.last_successful(company_id, now)
            missing = f"No successful sync was found for company {company_id}"
        else:
            wanted = canonical_uuid(sync_ref or "")
            found = self._state.sync_by_id(company_id, wanted) if wanted else None
            missing = f"No sync was found with ID {sync_ref}"
        if found is None:
            return error_response(404, missing)
        return json_response(200, _status_json(found, now))

    def _sync_status(self, company_id: str, syncs: tuple[StartedSync, ...], now: float) -> Response:
        """``get-sync-status``: the spec's ``SyncStatus`` ("the status of syncing for a
        company and its connections"). Codat does not say which sync it describes; the
        fake reports the latest, and 404 before the first (both assumptions). ``syncs`` holds
        the company's newest two (or fewer)."""
        if not syncs:
            return error_response(404, f"No syncs were found for company {company_id}")
        latest = syncs[-1]
        body = _status_json(latest, now)
        body["commerceSyncId"] = latest.commerce_sync_id
        last_sync = syncs[-2].sync_utc if len(syncs) > 1 else None
        body["dataConnections"] = (
            [self._connection(company_id, last_sync)] if self.data_connections else []
        )
        return json_response(200, body)

    def _to_wall(self, reading: float) -> datetime:
        return self._wall_origin + timedelta(seconds=reading - self._clock_origin)


# helpers ---------------------------------------------------------------------------------


def _client_ip(scope: Scope) -> str | None:
    """The peer address: what Codat's per-IP limit counts."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _require_uuid(company_id: str) -> str:
    canonical = canonical_uuid(company_id)
    if canonical is None:
        raise ValueError(f"not a hyphenated UUID: {company_id!r}")
    return canonical


def _status_json(sync: StartedSync, now: float) -> dict[str, Any]:
    done = sync.finished_at(now)
    outcome = sync.outcome
    return {
        "companyId": sync.company_id,
        "syncId": sync.sync_id,
        "syncStatusCode": sync.status_code_at(now),
        "syncStatus": outcome.sync_status if done else "InProgress",
        "errorMessage": outcome.error_message if done else None,
        "syncExceptionMessage": outcome.exception_message if done else None,
        "syncUtc": sync.sync_utc,
        "dataPushed": outcome.data_pushed if done else False,
    }


def _parse_body(
    body: bytes, *, required: bool
) -> tuple[dict[str, Any] | None, list[ValidationItem]]:
    """The JSON object in ``body`` (None when absent) and any validation errors."""
    if not body.strip():
        return None, [_required("dateRange")] if required else []
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return None, [ValidationItem("$", f"The request body is not valid JSON: {exc}", "Json")]
    if not isinstance(parsed, dict):  # null too: the spec's bodies are non-nullable objects
        return None, [_wrong_type("$", "a JSON object")]
    return parsed, []


def _timestamp_field(item: str, raw: Any) -> tuple[datetime | None, list[ValidationItem]]:
    if not isinstance(raw, str):
        return None, [_wrong_type(item, "an ISO-8601 date-time string")]
    parsed = parse_timestamp(raw)
    if parsed is None:
        return None, [
            ValidationItem(item, f"{raw!r} is not a valid ISO-8601 date-time.", "DateTime")
        ]
    return parsed, []


def _required(item: str) -> ValidationItem:
    return ValidationItem(item, f"{item} is required.", "Required")


def _wrong_type(item: str, expected: str) -> ValidationItem:
    return ValidationItem(item, f"{item} must be {expected}.", "Type")


def _validation_failed(errors: list[ValidationItem]) -> Response:
    return error_response(400, "One or more validation errors occurred.", validation=errors)


def _invalid(item: str, message: str) -> Response:
    return _validation_failed([ValidationItem(item, message, "Header")])


def _company_not_found(company_id: str) -> Response:
    return error_response(404, f"No company was found with ID {company_id}", service="ClientsApi")


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: Response) -> None:
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    headers.append((b"content-length", str(len(response.body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
