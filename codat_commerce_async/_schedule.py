"""The poll schedule of a waiting bulk run: one time-ordered heap, not a task per sync.

Every sync a run waits for is a small :class:`Waiting` entry in a heap keyed by its
next poll time. The times come from the run's :class:`~._estimate.DurationEstimate`:
each poll result is an observation (running at age ``a``, or finished by age ``b``);
the plan is refitted as they arrive (after each of the first ones, then every 10%
more), and when the plan changes the heap is re-keyed, so a run learns within a few
syncs. A poll that finds a sync finished ends its schedule.

Scouts: the first :data:`SCOUTS` syncs of a run and one in :data:`SCOUT_EVERY` after
them also poll on a fine geometric ladder (every 20% of their age, each with its own
phase; the first ones from ``poll_interval``, the others from the estimate's 5%
quantile on), so the run sees syncs running and finished
within narrow brackets even when the plan would poll everyone after the end.

Probes: beyond the oldest age at which the run has seen a sync running (its frontier)
the estimate is only the prior's guess, so a plan step from there can overshoot where
the longest syncs end (everyone seen running at 840 s polled next at 1,182 s when all
end by 900 s). The first :data:`SCOUTS` syncs at the frontier whose plan steps further
than one rung of the scouts' ladder past it poll at that rung instead, one set of
probes per rung, and the plan is refitted as soon as a probe answers.

The user's bounds: no two polls of a sync closer than ``poll_interval``, none further
apart than ``max_poll_interval`` (None: the plan decides), and a wait that outlives
``timeout`` ends with the last status seen.

Pure: no I/O; the run's tasks (:mod:`._bulk`) pop due entries, poll, and report back.
"""

from __future__ import annotations

import heapq
import math
import zlib
from typing import TYPE_CHECKING

from ._estimate import DurationEstimate, Plan

if TYPE_CHECKING:
    from ._bulk import BulkResult
    from ._models import CompanySyncStatus

__all__ = ["SCOUTS", "SCOUT_EVERY", "PollSchedule", "Waiting"]

_REFIT_SHARE = 0.1  # refit once observations grew by this share since the last fit
#: Scouts: the first ones of a run, then one in this many.
SCOUTS = 5
SCOUT_EVERY = 64
_LADDER = 1.2  # a scout polls again after 20% more age
_GOLDEN = 0.6180339887498949  # spreads the scouts' ladder phases evenly


class Waiting:
    """One sync being waited for (kept small: a run may wait for 100,000 at once)."""

    __slots__ = (
        "base",
        "deadline",
        "due",
        "first",
        "last",
        "latest",
        "low",
        "observed",
        "origin",
        "packed",
        "polled",
        "probe",
        "scout",
        "sync_id",
    )

    def __init__(
        self,
        base: BulkResult,
        sync_id: str | None,
        *,
        origin: float,
        running: bool,
        packed: bytes | None = None,
    ) -> None:
        self.base = base
        """The result so far (company, key, attempts; ``summary`` unless packed)."""
        self.sync_id = sync_id
        self.latest = sync_id is None
        """Poll the company's latest sync (no id, or the by-id endpoint said 404)."""
        self.origin = origin
        """Clock reading at age 0: when the trigger was answered (or the wait began)."""
        self.low = 0.0
        """The last age at which the sync was seen running."""
        self.observed = running
        """True once ``low`` is a real observation (the trigger said "started")."""
        self.polled = origin
        self.due = origin
        self.deadline: float | None = None
        self.last: CompanySyncStatus | None = None
        self.packed = packed
        """The trigger's answer as compressed JSON: a third of a parsed model's size."""
        self.scout = -1.0
        """A scout's ladder phase in [0, 1) (-1: not a scout)."""
        self.first = False
        """One of the run's first scouts: its ladder starts at ``poll_interval``."""
        self.probe = -1
        """The frontier rung this sync's next poll probes (-1: none)."""

    @staticmethod
    def pack(raw: bytes) -> bytes:
        return zlib.compress(raw, 1)

    def unpacked(self) -> bytes | None:
        return None if self.packed is None else zlib.decompress(self.packed)


class PollSchedule:
    """When to poll each waiting sync (see the module doc)."""

    def __init__(
        self,
        poll_interval: float,
        max_poll_interval: float | None,
        timeout: float | None,
    ) -> None:
        self.min_gap = poll_interval
        self.max_gap = max_poll_interval
        self.timeout = timeout
        self.estimate = DurationEstimate()
        self.plan: Plan = self.estimate.plan()
        self._heap: list[tuple[float, int, Waiting]] = []
        self._seq = 0
        self._changes = 0
        self._fitted_on = 0
        self._added = 0
        #: The oldest age at which any sync of the run was seen running: beyond it the
        #: estimate is only the prior's guess.
        self.frontier = 0.0
        self._probes: dict[int, int] = {}
        self._probe_seen = False
        #: Polls sent so far and syncs seen finished (for the run's progress).
        self.polls = 0
        self.confirmed = 0

    def __len__(self) -> int:
        return len(self._heap)

    # -- adding and taking --------------------------------------------------------

    def add(self, entry: Waiting, now: float, *, poll_now: bool = False) -> None:
        """Start waiting for ``entry`` (``poll_now``: its state is unknown, look first)."""
        if self.timeout is not None:
            entry.deadline = entry.origin + self.timeout
        if self._added < SCOUTS or self._added % SCOUT_EVERY == 0:
            entry.scout = (self._added * _GOLDEN) % 1.0
            entry.first = self._added < SCOUTS
        self._added += 1
        entry.due = now if poll_now else self._next_poll(entry)
        self._push(entry)

    def next_due(self) -> float | None:
        """When the earliest poll is due (None: nothing scheduled)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> Waiting | None:
        """The entry whose poll is due now, if any."""
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    # -- what a poll found -----------------------------------------------------------

    def running(self, entry: Waiting, now: float, status: CompanySyncStatus) -> bool:
        """The sync is still running: schedule its next poll; False if its wait has
        timed out (then it leaves the schedule)."""
        self.polls += 1
        age = now - entry.origin
        if entry.observed and entry.low > 0:
            self.estimate.remove(entry.low, None)
        entry.low, entry.observed, entry.polled, entry.last = age, True, now, status
        self.frontier = max(self.frontier, age)
        self.estimate.add(age, None)
        self._probed(entry)
        self._changed()
        if entry.deadline is not None and now >= entry.deadline:
            return False
        entry.due = self._next_poll(entry)
        self._push(entry)
        return True

    def finished(self, entry: Waiting, now: float) -> None:
        """The sync has ended: its schedule ends; what it took teaches the plan."""
        self.polls += 1
        self.confirmed += 1
        if entry.observed:
            if entry.low > 0:
                self.estimate.remove(entry.low, None)
            self.estimate.add(entry.low, now - entry.origin)
            self._probed(entry)
            self._changed()

    def failed(self, entry: Waiting) -> None:
        """A poll raised: the entry leaves the schedule (its result carries the error)."""
        if entry.observed and entry.low > 0:
            self.estimate.remove(entry.low, None)

    # -- planning -------------------------------------------------------------------

    def _next_poll(self, entry: Waiting) -> float:
        age = entry.low if entry.observed else max(0.0, entry.polled - entry.origin)
        after = self.plan.after(age)
        if entry.scout >= 0:
            start = max(age, self.min_gap if entry.first else self.plan.low, self.min_gap)
            rung = math.floor(math.log(start / self.min_gap, _LADDER) - entry.scout + 1e-9)
            after = min(after, self.min_gap * _LADDER ** (rung + 1 + entry.scout))
        elif age > 0 and age * _LADDER >= self.frontier:
            after = min(after, self._probe(entry, after))
        due = max(entry.origin + after, entry.polled + self.min_gap)
        if self.max_gap is not None:
            due = min(due, entry.polled + self.max_gap)
        if entry.deadline is not None:
            due = min(due, max(entry.deadline, entry.polled + self.min_gap))
        return due

    def _probe(self, entry: Waiting, after: float) -> float:
        """For a sync at the frontier whose plan steps past the scouts' ladder there:
        the first :data:`SCOUTS` such syncs per rung of the ladder poll one rung past the
        frontier instead, so the run learns where its longest syncs end."""
        rung = math.floor(math.log(max(self.frontier, self.min_gap) / self.min_gap, _LADDER))
        target = self.min_gap * _LADDER ** (rung + 1)
        if after <= target:
            return after
        if entry.probe != rung:
            if self._probes.get(rung, 0) >= SCOUTS:
                return after
            self._probes[rung] = self._probes.get(rung, 0) + 1
            entry.probe = rung
        return target

    def _probed(self, entry: Waiting) -> None:
        if entry.probe >= 0:
            entry.probe = -1
            self._probe_seen = True

    def _push(self, entry: Waiting) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (entry.due, self._seq, entry))

    def _changed(self) -> None:
        self._changes += 1
        if not self._probe_seen and (
            self._changes - self._fitted_on < max(1.0, _REFIT_SHARE * self._fitted_on)
        ):
            return
        self._probe_seen = False
        self._fitted_on = self._changes
        plan = self.estimate.plan()
        if plan.same_as(self.plan):
            return
        self.plan = plan
        # Re-key every waiting entry on the new plan (earlier or later).
        rekeyed = []
        for _, seq, entry in self._heap:
            entry.due = self._next_poll(entry)
            rekeyed.append((entry.due, seq, entry))
        heapq.heapify(rekeyed)
        self._heap = rekeyed

    def expected_duration(self) -> float:
        """The plan's mean duration, in seconds."""
        return self.plan.mean
