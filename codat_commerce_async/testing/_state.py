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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


class _CompanySyncs:
    """One company's syncs, oldest first, with what the endpoints look up kept at hand.

    ``last_successful`` is answered without rescanning history: ``settled`` is the newest
    successful sync known to have finished, ``pending`` the successful ones started after
    it that had not finished when last asked (the clock only moves forward).
    """

    __slots__ = ("pending", "settled", "syncs")

    def __init__(self) -> None:
        self.syncs: list[StartedSync] = []
        self.settled: StartedSync | None = None
        self.pending: list[StartedSync] = []

    def add(self, sync: StartedSync) -> None:
        self.syncs.append(sync)
        if sync.outcome.succeeded:
            self.pending.append(sync)

    def last_successful(self, now: float) -> StartedSync | None:
        for index in range(len(self.pending) - 1, -1, -1):
            if self.pending[index].finished_at(now):
                self.settled = self.pending[index]
                del self.pending[: index + 1]  # older than the one found: never newest again
                break
        return self.settled


class FakeState:
    """Companies, syncs and records behind one lock (read from any thread).

    Syncs are indexed by company, by sync id and by idempotency key, so each request costs
    the same however many syncs were recorded before it.
    """

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
        self._by_company: dict[str, _CompanySyncs] = {}
        self._by_id: dict[str, StartedSync] = {}
        self._by_key: dict[str, StartedSync] = {}
        """The first sync each idempotency key started."""
        self._duplicates: dict[str, list[StartedSync]] = {}
        """Keys that started more than one sync: every sync they started, oldest first."""
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

    def _duration(self, company_id: str, outcome: SyncOutcome) -> float:
        """Seconds a new sync of ``company_id`` stays in progress (called under the lock).

        The one place a sync's duration is chosen: extend it here (e.g. per-company
        durations drawn from a distribution)."""
        if outcome.duration is not None:
            return outcome.duration
        draw = self.durations
        return self.default_duration if draw is None else float(draw(company_id))

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
                duration=self._duration(company_id, outcome),
                outcome=outcome,
            )
            self._syncs.append(sync)
            company = self._by_company.get(company_id)
            if company is None:
                company = self._by_company[company_id] = _CompanySyncs()
            company.add(sync)
            self._by_id[sync.sync_id] = sync
            if idempotency_key is not None:
                first = self._by_key.setdefault(idempotency_key, sync)
                if first is not sync:
                    self._duplicates.setdefault(idempotency_key, [first]).append(sync)
            return sync

    def syncs(self, company_id: str | None = None) -> tuple[StartedSync, ...]:
        """All syncs, or one company's, oldest first (a copy: O(n), for inspection)."""
        with self._lock:
            if company_id is None:
                return tuple(self._syncs)
            company = self._by_company.get(company_id)
            return tuple(company.syncs) if company is not None else ()

    def sync_count(self, company_id: str | None = None) -> int:
        with self._lock:
            if company_id is None:
                return len(self._syncs)
            company = self._by_company.get(company_id)
            return len(company.syncs) if company is not None else 0

    def latest(self, company_id: str, count: int = 1) -> tuple[StartedSync, ...]:
        """The company's newest ``count`` syncs (or fewer), oldest first."""
        with self._lock:
            company = self._by_company.get(company_id)
            return tuple(company.syncs[-count:]) if company is not None else ()

    def sync_by_id(self, company_id: str, sync_id: str) -> StartedSync | None:
        with self._lock:
            sync = self._by_id.get(sync_id)
            return sync if sync is not None and sync.company_id == company_id else None

    def last_successful(self, company_id: str, now: float) -> StartedSync | None:
        with self._lock:
            company = self._by_company.get(company_id)
            return company.last_successful(now) if company is not None else None

    def duplicate_keys(self) -> dict[str, tuple[StartedSync, ...]]:
        """Idempotency keys that started more than one sync, with those syncs."""
        with self._lock:
            return {key: tuple(syncs) for key, syncs in self._duplicates.items()}

    # record

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self._records.append(entry)

    def records(self) -> tuple[RequestRecord, ...]:
        with self._lock:
            return tuple(self._records)

    def reset(self) -> dict[str, int]:
        """Forget syncs, outcomes and records (companies are kept); returns what was
        forgotten, counted."""
        with self._lock:
            forgot = {
                "requests": len(self._records),
                "syncs": len(self._syncs),
                "outcomes": len(self._outcomes) + (self.default_outcome != SyncOutcome()),
            }
            self._syncs.clear()
            self._by_company.clear()
            self._by_id.clear()
            self._by_key.clear()
            self._duplicates.clear()
            self._records.clear()
            self._outcomes.clear()
            self.default_outcome = SyncOutcome()
            return forgot
