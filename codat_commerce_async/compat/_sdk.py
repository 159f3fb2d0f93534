"""``CodatSyncCommerce``: the original SDK's entry point, on top of :class:`SyncClient`."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, TypeVar

from .._blocking import SyncClient, close_quietly_when_dropped
from .._config import DEFAULT_ATTEMPT_TIMEOUT
from .._exceptions import APIStatusError, RetryBudgetExhaustedError
from .._models import SyncSummary
from .._response import APIResponse
from .._types import NOT_GIVEN
from .models import operations, shared
from .utils import EngineRetrySettings, RetryConfig, to_engine_settings

__all__ = ["SERVERS", "CodatSyncCommerce", "Sync"]

#: The servers of the original SDK (``server_idx`` indexes this list).
SERVERS = ["https://api.codat.io"]

R = TypeVar("R", bound=operations._SyncResponse)


class Sync:
    """``s.sync``: the two sync triggers with the original's signatures.

    An HTTP error status does not raise: the response comes back with its ``status_code``,
    ``raw_response`` and ``error``, and ``sync_summary=None``, as in the original. A call that
    gets no HTTP response at all (connection refused or reset, a timeout) raises
    :class:`~codat_commerce_async.APIConnectionError`; invalid input (a company id that is
    not a UUID, a date without a time zone, a missing ``sync_range``) raises ``ValueError``
    before anything is sent.
    """

    def __init__(self, sdk: CodatSyncCommerce) -> None:
        self._engine_for = sdk._engine_for

    def request_sync(
        self,
        request: operations.RequestSyncRequest,
        retries: RetryConfig | None = None,
    ) -> operations.RequestSyncResponse:
        """Sync a company from its last successful sync up to ``sync_to`` (or now).

        ``POST /companies/{companyId}/sync/commerce/latest``. ``retries`` overrides the
        client's retry settings for this call (see :mod:`codat_commerce_async.compat.utils`).
        """
        args = request.sync_to_latest_args
        engine = self._engine_for(retries)
        try:
            raw = engine.sync.with_raw_response.request_sync(
                request.company_id, sync_to=args.sync_to if args is not None else None
            )
        except APIStatusError as exc:
            return _failed(operations.RequestSyncResponse, exc)
        except RetryBudgetExhaustedError as exc:
            if isinstance(exc.__cause__, APIStatusError):  # no retry left: the last answer
                return _failed(operations.RequestSyncResponse, exc.__cause__)
            raise
        return _succeeded(operations.RequestSyncResponse, raw)

    def request_sync_for_date_range(
        self,
        request: operations.RequestSyncForDateRangeRequest,
        retries: RetryConfig | None = None,
    ) -> operations.RequestSyncForDateRangeResponse:
        """Sync a company for the window ``sync_range.date_range`` (start to finish).

        ``POST /meta/companies/{companyId}/sync/commerce/historic``.
        """
        if request.sync_range is None:
            raise ValueError("request.sync_range is required: the window to sync")
        window = request.sync_range.date_range
        engine = self._engine_for(retries)
        try:
            raw = engine.sync.with_raw_response.request_sync_for_date_range(
                request.company_id, start=window.start, finish=window.finish
            )
        except APIStatusError as exc:
            return _failed(operations.RequestSyncForDateRangeResponse, exc)
        except RetryBudgetExhaustedError as exc:
            if isinstance(exc.__cause__, APIStatusError):  # no retry left: the last answer
                return _failed(operations.RequestSyncForDateRangeResponse, exc.__cause__)
            raise
        return _succeeded(operations.RequestSyncForDateRangeResponse, raw)


def _succeeded(kind: type[R], raw: APIResponse[SyncSummary]) -> R:
    return kind(
        content_type=raw.headers.get("content-type"),
        status_code=raw.status_code,
        raw_response=raw.http_response,
        sync_summary=raw.parsed,
        idempotency_key=raw.idempotency_key,
    )


def _failed(kind: type[R], exc: APIStatusError) -> R:
    return kind(
        content_type=exc.response.headers.get("content-type"),
        status_code=exc.status_code,
        raw_response=exc.response,
        sync_summary=None,
        idempotency_key=exc.idempotency_key,
        error=exc,
    )


class CodatSyncCommerce:
    """The original SDK's client, as a thin layer over :class:`SyncClient`::

        import codat_commerce_async.compat as codatsynccommerce
        from codat_commerce_async.compat.models import operations, shared

        s = codatsynccommerce.CodatSyncCommerce(
            security=shared.Security(auth_header="Basic BASE_64_ENCODED(API_KEY)"),
        )
        res = s.sync.request_sync(operations.RequestSyncRequest(company_id=...))

    Args:
        security: ``shared.Security(auth_header=...)``, sent verbatim as ``Authorization``.
            Without it the ``CODAT_API_KEY`` environment variable is used.
        server_idx: index into :data:`SERVERS` (only ``0`` exists).
        server_url: the base URL (default: ``CODAT_BASE_URL`` or ``https://api.codat.io``).
        url_params: values for ``{name}`` placeholders in ``server_url``.
        client: the original took a ``requests.Session``; that is not supported here (pass
            ``http_client=httpx.AsyncClient(...)`` among ``engine_options`` instead).
        retry_config: default retry settings for every call (see
            :mod:`codat_commerce_async.compat.utils` for how they map).
        engine_options: any other :class:`SyncClient` argument (``timeout``,
            ``max_concurrency``, ``event_hooks``, ``transport``, ...).

    It holds a connection pool and a background event loop: call :meth:`close` (or use
    ``with``) when done. One forgotten, as the original's examples do, is closed quietly
    when it is garbage-collected or at interpreter exit.
    """

    sync: Sync
    """The sync operations."""

    def __init__(
        self,
        security: shared.Security | None = None,
        server_idx: int | None = None,
        server_url: str | None = None,
        url_params: dict[str, str] | None = None,
        client: object | None = None,
        retry_config: RetryConfig | None = None,
        **engine_options: Any,
    ) -> None:
        if client is not None:
            raise TypeError(
                "compat mode does not take a requests.Session (client=); pass "
                "http_client=httpx.AsyncClient(...) or transport=... instead"
            )
        for name in ("auth_header", "base_url"):
            if name in engine_options:
                hint = "security=" if name == "auth_header" else "server_url="
                raise TypeError(f"pass {hint} rather than {name}= to CodatSyncCommerce")
        if server_idx is not None and not 0 <= server_idx < len(SERVERS):
            raise ValueError(f"server_idx must be between 0 and {len(SERVERS) - 1}")
        if server_url is not None and url_params:
            for name, value in url_params.items():
                server_url = server_url.replace("{" + name + "}", value)
        if server_url is None and server_idx is not None:
            server_url = SERVERS[server_idx]
        if security is not None:
            engine_options["auth_header"] = security.auth_header
        self._retry_config = retry_config
        self._attempt_timeout = engine_options.get("attempt_timeout", DEFAULT_ATTEMPT_TIMEOUT)
        self._engine = SyncClient(base_url=server_url, **engine_options)
        self._variants: dict[EngineRetrySettings, SyncClient] = {}
        self._lock = threading.Lock()
        # The engine closes itself once nothing uses it (this object, its .sync, or the
        # engine handed out by .engine): quietly, as the original had nothing to close.
        close_quietly_when_dropped(self._engine)
        self.sync = Sync(self)

    @property
    def engine(self) -> SyncClient:
        """The :class:`SyncClient` doing the work (for new code next to old)."""
        return self._engine

    def _engine_for(self, retries: RetryConfig | None) -> SyncClient:
        config = retries if retries is not None else self._retry_config
        if config is None:
            return self._engine
        settings = to_engine_settings(config, attempt_timeout=self._attempt_timeout)
        with self._lock:
            variant = self._variants.get(settings)
            if variant is None:
                variant = self._engine.with_options(
                    max_retries=settings.max_retries,
                    deadline=settings.deadline if settings.deadline is not None else NOT_GIVEN,
                    retry_policy=settings.retry_policy or NOT_GIVEN,
                )
                if len(self._variants) < 64:  # a few configs in practice; never unbounded
                    self._variants[settings] = variant
        return variant

    def close(self) -> None:
        """Close the connection pool and stop the background loop (idempotent)."""
        self._engine.close()

    def __enter__(self) -> CodatSyncCommerce:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CodatSyncCommerce(server_url={str(self._engine.base_url)!r}, auth=<redacted>)"
