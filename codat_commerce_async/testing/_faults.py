"""Fault injection: the :class:`Fault` value type and the :class:`FaultPlan` that hands them out.

A request passes three *stages*, and every fault names the one it strikes at:

``"edge"``
    Before the app, as a load balancer or gateway would fail: no auth check, no idempotency
    ledger, no sync. Retrying with the same ``Idempotency-Key`` reaches the app afresh.
``"before_sync"``
    Inside the app, after auth, rate limiting and the idempotency reservation, before the
    handler runs (so before any sync starts). The ledger caches the response like any other,
    except a 429 (the key is released) and a dropped connection (the key is released).
``"after_sync"``
    After the handler ran, so a valid trigger *has* started its sync. An error fault replaces
    the handler's response and is cached (but a 429 releases the key although the sync ran);
    a drop hides the real response, which the ledger has stored.

For the status GETs "sync" means "the handler": they never start syncs.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = [
    "ConnectionDropped",
    "Fault",
    "FaultBody",
    "FaultKind",
    "FaultPlan",
    "FaultStage",
    "RequestInfo",
    "non_defaults",
]

FaultKind = Literal["error", "latency", "drop"]
FaultStage = Literal["edge", "before_sync", "after_sync"]
FaultBody = Literal["json", "html", "empty"]

_STAGES: tuple[FaultStage, ...] = ("edge", "before_sync", "after_sync")


class ConnectionDropped(Exception):
    """Raised out of the ASGI app when a drop fault fires.

    :meth:`FakeCodat.transport` turns it into ``httpx.RemoteProtocolError`` and
    :class:`FakeCodatServer` into a connection closed without a response; a plain
    ``httpx.ASGITransport`` lets it through unchanged.
    """


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build it with the class methods.

    Every fault may carry ``delay`` seconds of latency, slept before it takes effect.
    """

    kind: FaultKind
    stage: FaultStage = "before_sync"
    status: int | None = None
    body: FaultBody = "json"
    delay: float = 0.0
    retry_after: float | str | None = None
    can_be_retried: str = "Unknown"
    message: str | None = None

    def __post_init__(self) -> None:
        if self.stage not in _STAGES:
            raise ValueError(f"unknown fault stage {self.stage!r}")
        if not self.delay >= 0:  # also rejects NaN
            raise ValueError("delay must be >= 0")
        if self.kind == "error":
            if self.status is None or not 400 <= self.status <= 599:
                raise ValueError("an error fault needs a 4xx or 5xx status")
        elif self.kind in ("latency", "drop"):
            if self.status is not None:
                raise ValueError(f"a {self.kind} fault has no status")
        else:
            raise ValueError(f"unknown fault kind {self.kind!r}")

    @property
    def terminal(self) -> bool:
        """True if the fault ends the request (an error or a drop), not just delays it."""
        return self.kind != "latency"

    @classmethod
    def error(
        cls,
        status: int = 500,
        *,
        stage: FaultStage = "before_sync",
        body: FaultBody = "json",
        delay: float = 0.0,
        retry_after: float | str | None = None,
        can_be_retried: str = "Unknown",
        message: str | None = None,
    ) -> Fault:
        """Answer ``status`` instead of the real response.

        ``body`` picks a Codat ``ErrorMessage`` (``"json"``), a gateway HTML page or nothing.
        ``retry_after`` (seconds, or a string sent verbatim) adds a ``Retry-After`` header.
        """
        return cls(
            "error",
            stage,
            status,
            body,
            delay,
            retry_after,
            can_be_retried,
            message,
        )

    @classmethod
    def edge(
        cls,
        status: int = 503,
        *,
        body: FaultBody = "html",
        delay: float = 0.0,
        retry_after: float | str | None = None,
    ) -> Fault:
        """A gateway failure before the request reaches the app (no sync, nothing cached)."""
        return cls.error(status, stage="edge", body=body, delay=delay, retry_after=retry_after)

    @classmethod
    def fail_after_sync(
        cls, status: int = 500, *, body: FaultBody = "json", delay: float = 0.0
    ) -> Fault:
        """Start the sync, then answer ``status`` (cached by the ledger like Codat does)."""
        return cls.error(status, stage="after_sync", body=body, delay=delay)

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | str | None = 1,
        *,
        stage: FaultStage = "before_sync",
        delay: float = 0.0,
    ) -> Fault:
        """A 429 with ``Retry-After`` (omitted when None); never cached by the ledger."""
        return cls.error(429, stage=stage, delay=delay, retry_after=retry_after)

    @classmethod
    def latency(cls, seconds: float, *, stage: FaultStage = "before_sync") -> Fault:
        """Sleep ``seconds`` at ``stage``, then carry on normally."""
        return cls("latency", stage, delay=seconds)

    @classmethod
    def drop(cls, *, stage: FaultStage = "after_sync", delay: float = 0.0) -> Fault:
        """Close the connection without sending a byte of response.

        At the default stage the request was fully processed (the sync started and the
        response is in the idempotency ledger); the client just never sees it.
        """
        return cls("drop", stage, delay=delay)


@dataclass(frozen=True)
class RequestInfo:
    """What a fault filter can match on."""

    method: str
    path: str
    company_id: str | None
    operation: str | None


@dataclass(frozen=True)
class _Filter:
    method: str | None = None
    path: re.Pattern[str] | None = None
    company_id: str | None = None
    operation: str | None = None

    def matches(self, request: RequestInfo) -> bool:
        return (
            (self.method is None or self.method == request.method)
            and (self.path is None or self.path.search(request.path) is not None)
            and (self.company_id is None or self.company_id == request.company_id)
            and (self.operation is None or self.operation == request.operation)
        )


@dataclass(frozen=True)
class _Rule:
    fault: Fault
    probability: float
    filter: _Filter = field(default_factory=_Filter)


class FaultPlan:
    """Decides which faults hit which request: a script first, then random rules.

    Scripted faults are consumed in order: each applies to the next request that matches its
    filter *and reaches its stage* (a replayed or rejected request never reaches the later
    stages, so it does not use up their faults). Random rules fire independently with their
    probability, drawn from a ``random.Random(seed)``. When several faults hit one request at
    one stage their delays add up and the first error or drop wins.

    :meth:`set_baseline` makes the faults installed so far the plan's baseline, which
    :meth:`reset` (and so ``FakeCodat.reset()`` and ``POST /_fake/reset``) puts back: the
    fake-server's ``--latency`` and ``--fail-rate`` are installed that way.
    """

    def __init__(self, *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._script: list[tuple[Fault, _Filter]] = []
        self._rules: list[_Rule] = []
        self._baseline: tuple[tuple[tuple[Fault, _Filter], ...], tuple[_Rule, ...]] = ((), ())

    def script(
        self,
        *faults: Fault,
        times: int = 1,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        company_id: str | None = None,
        operation: str | None = None,
    ) -> FaultPlan:
        """Queue ``faults`` (repeated ``times``) for the next matching requests.

        ``path`` is a regular expression searched in the raw request path; ``operation`` is
        an operationId such as ``"request-sync"``. Returns the plan, for chaining.
        """
        if times < 0:
            raise ValueError("times must be >= 0")
        flt = _make_filter(method, path, company_id, operation)
        with self._lock:
            self._script.extend((fault, flt) for _ in range(times) for fault in faults)
        return self

    def randomly(
        self,
        fault: Fault,
        probability: float,
        *,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        company_id: str | None = None,
        operation: str | None = None,
    ) -> FaultPlan:
        """Apply ``fault`` to each matching request with ``probability`` (0..1)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        rule = _Rule(fault, probability, _make_filter(method, path, company_id, operation))
        with self._lock:
            self._rules.append(rule)
        return self

    def clear(self) -> None:
        """Forget every scripted fault and random rule, the baseline's too (the random
        state is kept)."""
        with self._lock:
            self._script.clear()
            self._rules.clear()
            self._baseline = ((), ())

    def set_baseline(self) -> None:
        """Make the scripted faults and rules installed now what :meth:`reset` restores."""
        with self._lock:
            self._baseline = (tuple(self._script), tuple(self._rules))

    def reset(self) -> int:
        """Back to the baseline (nothing, unless :meth:`set_baseline` was called); returns
        how many scripted faults and rules beyond the baseline were forgotten."""
        with self._lock:
            script, rules = self._baseline
            extra = sum(entry not in script for entry in self._script)
            extra += sum(rule not in rules for rule in self._rules)
            self._script[:] = script
            self._rules[:] = rules
            return extra

    def baseline(self) -> list[dict[str, Any]]:
        """The baseline's faults as JSON-ready dicts: kind, stage and the fields set to
        other than their defaults, with ``probability`` for a rule or ``scripted: true``."""
        with self._lock:
            script, rules = self._baseline
            entries: list[tuple[Fault, dict[str, Any]]] = [
                (fault, {"scripted": True}) for fault, _ in script
            ]
            entries += [(rule.fault, {"probability": rule.probability}) for rule in rules]
        return [{**_describe(fault), **extra} for fault, extra in entries]

    @property
    def pending(self) -> int:
        """How many scripted faults have not been used yet."""
        with self._lock:
            return len(self._script)

    def draw(self, stage: FaultStage, request: RequestInfo) -> tuple[Fault, ...]:
        """Faults that hit ``request`` at ``stage`` (consumes scripted ones)."""
        hits: list[Fault] = []
        with self._lock:
            for index, (fault, flt) in enumerate(self._script):
                if fault.stage == stage and flt.matches(request):
                    hits.append(fault)
                    del self._script[index]
                    break
            for rule in self._rules:
                if rule.fault.stage != stage or not rule.filter.matches(request):
                    continue
                # Always draw, so what a seed produces does not depend on the probabilities.
                if self._rng.random() < rule.probability:
                    hits.append(rule.fault)
        return tuple(hits)


def _describe(fault: Fault) -> dict[str, Any]:
    """``fault``'s kind, stage and every field that differs from its default."""
    return {"kind": fault.kind, "stage": fault.stage, **non_defaults(fault)}


def non_defaults(settings: Any) -> dict[str, Any]:
    """The fields of dataclass instance ``settings`` that differ from their defaults."""
    return {
        spec.name: getattr(settings, spec.name)
        for spec in fields(settings)
        if getattr(settings, spec.name) != spec.default
    }


def _make_filter(
    method: str | None,
    path: str | re.Pattern[str] | None,
    company_id: str | None,
    operation: str | None,
) -> _Filter:
    pattern = re.compile(path) if isinstance(path, str) else path
    return _Filter(
        method.upper() if method else None,
        pattern,
        company_id.lower() if company_id else None,
        operation,
    )


def combine(faults: Sequence[Fault]) -> tuple[float, Fault | None]:
    """Total delay of ``faults`` and the first terminal one (or None)."""
    delay = sum(fault.delay for fault in faults)
    terminal = next((fault for fault in faults if fault.terminal), None)
    return delay, terminal
