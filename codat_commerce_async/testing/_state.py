"""The fake's world: companies, started syncs with their outcomes, and the request record."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._faults import Fault

__all__ = [
    "LONG_RUNNING_AFTER",
    "FakeState",
    "RequestRecord",
    "StartedSync",
    "SyncOperation",
    "SyncOutcome",
]

SyncOperation = Literal["request-sync", "request-sync-for-date-range"]

# Codat reports 1010 instead of 1000 once a sync has run for more than ten minutes.
LONG_RUNNING_AFTER = 600.0

# Meanings from Codat's Sync for Commerce error documentation; the texts are not an enum.
_OUTCOME_TEXT: dict[int, tuple[str, str | None]] = {
    2000: ("Complete", None),
    2040: ("Complete", None),
    4000: ("ValidateError", "Configuration error"),
    4040: ("NotStarted", "Company deleted or de-authorized"),
    4220: ("NotStarted", "Company deleted or de-authorized"),
    4260: ("NotStarted", "Accounting software billing expired"),
    5000: ("PushError", "Generic server error"),
    5080: ("NotStarted", "Duplication protection"),
    5120: ("MapCoreError", "Data processing error"),
    5130: ("PushError", "Data write/push error"),
}


@dataclass(frozen=True)
class SyncOutcome:
    """How a sync ends once its duration has passed."""

    status_code: int = 2000
    sync_status: str | None = "Complete"
    error_message: str | None = None
    exception_message: str | None = None
    data_pushed: bool = True
    duration: float | None = None
    """Seconds the sync stays in progress; None uses the fake's ``sync_duration``."""

    @classmethod
    def for_code(
        cls,
        status_code: int,
        *,
        sync_status: str | None = None,
        error_message: str | None = None,
        exception_message: str | None = None,
        data_pushed: bool | None = None,
        duration: float | None = None,
    ) -> SyncOutcome:
        """An outcome with Codat-like defaults for ``status_code`` (e.g. 2040, 4000, 5080)."""
        if not 2000 <= status_code <= 5999:
            raise ValueError("a terminal sync status code is within 2000..5999")
        default_text, default_error = _OUTCOME_TEXT.get(
            status_code, ("Complete", None) if status_code < 3000 else ("Error", "Sync failed")
        )
        return cls(
            status_code,
            sync_status if sync_status is not None else default_text,
            error_message if error_message is not None else default_error,
            exception_message,
            data_pushed if data_pushed is not None else status_code == 2000,
            duration,
        )

    @property
    def succeeded(self) -> bool:
        """True for the 2xxx band."""
        return 2000 <= self.status_code < 3000


@dataclass(frozen=True)
class StartedSync:
    """A sync the fake really started: one per successful trigger, never for a replay."""

    sync_id: str
    """The id the status endpoints report (``CompanySyncStatus.syncId``)."""
    commerce_sync_id: str
    """``SyncSummary.commerceSyncId``; equal to ``sync_id`` unless ``sync_id_lookup=False``."""
    company_id: str
    operation: SyncOperation
    idempotency_key: str | None
    start: str
    finish: str
    sync_utc: str
    started_at: float
    """Clock reading when the sync started."""
    duration: float
    outcome: SyncOutcome

    def status_code_at(self, now: float) -> int:
        """``syncStatusCode`` at clock reading ``now``."""
        elapsed = now - self.started_at
        if elapsed < self.duration:
            return 1010 if elapsed >= LONG_RUNNING_AFTER else 1000
        return self.outcome.status_code

    def finished_at(self, now: float) -> bool:
        """True once the outcome is visible."""
        return now - self.started_at >= self.duration


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake received, and what it did with it."""

    method: str
    path: str
    """Raw (still percent-encoded) path, without the query string."""
    query: str
    headers: tuple[tuple[str, str], ...]
    """Lower-case names; ``authorization`` is redacted."""
    body: bytes
    idempotency_key: str | None
    company_id: str | None
    operation: str | None
    """The operationId matched, e.g. ``"request-sync"``; None for unknown routes."""
    received_at: float
    """Clock reading when the request arrived."""
    status: int | None
    """Status sent, or None if the connection was dropped or the request abandoned."""
    replayed: bool = False
    """True if the idempotency ledger answered with a stored response."""
    dropped: bool = False
    faults: tuple[Fault, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """First value of request header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n == wanted), None)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class FakeState:
    """Companies, syncs and records behind one lock (read from any thread)."""

    def __init__(self, companies: Iterable[str] | None, default_duration: float) -> None:
        self._lock = threading.Lock()
        self.strict = companies is not None
        self._known: set[str] = {c.lower() for c in companies or ()}
        self._unknown: set[str] = set()
        self.default_duration = default_duration
        #: Draws each new sync's duration from the company id (None: the default).
        self.durations: Callable[[str], float] | None = None
        self.default_outcome = SyncOutcome()
        self._outcomes: dict[str, SyncOutcome] = {}
        self._syncs: list[StartedSync] = []
        self._records: list[RequestRecord] = []

    # companies

    def company_exists(self, company_id: str) -> bool:
        with self._lock:
            if company_id in self._unknown:
                return False
            return not self.strict or company_id in self._known

    def add_company(self, company_id: str) -> None:
        with self._lock:
            self._known.add(company_id)
            self._unknown.discard(company_id)

    def mark_unknown(self, company_id: str) -> None:
        with self._lock:
            self._unknown.add(company_id)
            self._known.discard(company_id)

    # outcomes and syncs

    def set_outcome(self, company_id: str | None, outcome: SyncOutcome) -> None:
        with self._lock:
            if company_id is None:
                self.default_outcome = outcome
            else:
                self._outcomes[company_id] = outcome

    def start_sync(
        self,
        *,
        company_id: str,
        operation: SyncOperation,
        idempotency_key: str | None,
        start: str,
        finish: str,
        sync_utc: str,
        now: float,
        separate_ids: bool,
    ) -> StartedSync:
        with self._lock:
            outcome = self._outcomes.get(company_id, self.default_outcome)
            duration = outcome.duration
            if duration is None:
                draw = self.durations
                duration = self.default_duration if draw is None else float(draw(company_id))
            commerce_sync_id = str(uuid.uuid4())
            sync = StartedSync(
                sync_id=str(uuid.uuid4()) if separate_ids else commerce_sync_id,
                commerce_sync_id=commerce_sync_id,
                company_id=company_id,
                operation=operation,
                idempotency_key=idempotency_key,
                start=start,
                finish=finish,
                sync_utc=sync_utc,
                started_at=now,
                duration=duration,
                outcome=outcome,
            )
            self._syncs.append(sync)
            return sync

    def syncs(self, company_id: str | None = None) -> tuple[StartedSync, ...]:
        with self._lock:
            return tuple(s for s in self._syncs if company_id in (None, s.company_id))

    def last_successful(self, company_id: str, now: float) -> StartedSync | None:
        return next(
            (
                s
                for s in reversed(self.syncs(company_id))
                if s.finished_at(now) and s.outcome.succeeded
            ),
            None,
        )

    # record

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._records.append(entry)

    def records(self) -> tuple[RequestRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def reset(self) -> None:
        """Forget syncs, outcomes and records (companies are kept)."""
        with self._lock:
            self._syncs.clear()
            self._records.clear()
            self._outcomes.clear()
            self.default_outcome = SyncOutcome()
