"""How long the syncs of a run take, learnt as the run goes, and when to poll them.

Codat's status carries no end time, so a sync's duration is only known to lie in an
interval: after the last poll that saw it running (``low``) and no later than the
first that saw it finished (``high``); a sync still running is "longer than ``low``"
(right-censored). :class:`DurationEstimate` keeps both kinds, binned on a geometric
grid of ages (5% wide), and fits their distribution with Turnbull's self-consistency
(EM) algorithm for interval-censored data, smoothed by a prior worth
:data:`PRIOR_WEIGHT` syncs: a log-normal with median :data:`PRIOR_MEDIAN` (5 min) and
log-sd :data:`PRIOR_SIGMA` (1.0: 90% between 1 and 26 minutes). A few syncs of the run
outweigh the prior; the prior keeps the tail sane while every sync is still running.

:meth:`DurationEstimate.plan` turns the estimate into a poll plan by dynamic
programming over the grid: for a sync known to be running at age ``a``, the next poll
age minimises ``expected polls + expected lag / lag_per_poll``, where one poll is
worth a quarter of the mean duration in lag (:data:`LAG_SHARE`). For a duration that
is nearly the same for every sync the plan polls once, just after it; for spread-out
durations the polls thin out where few syncs end (gaps grow like 1/sqrt(hazard)).

Pure: no I/O, no clock; :mod:`._schedule` feeds it.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter

__all__ = [
    "LAG_SHARE",
    "PRIOR_MEDIAN",
    "PRIOR_SIGMA",
    "PRIOR_WEIGHT",
    "DurationEstimate",
    "Plan",
]

#: The prior's median sync duration, in seconds.
PRIOR_MEDIAN = 300.0
#: The prior's standard deviation of log-duration.
PRIOR_SIGMA = 1.0
#: How many syncs the prior is worth.
PRIOR_WEIGHT = 2.0
#: One poll is worth this share of the mean duration in lag.
LAG_SHARE = 0.25

# Bin edges: 0, then 1 s growing 5% a bin to two days; the last bin is open-ended.
_RATIO = 1.05
_EDGES: list[float] = [0.0] + [
    _RATIO**i for i in range(int(math.log(172_800.0) / math.log(_RATIO)) + 2)
]
_BINS = len(_EDGES)  # bin j is [edge j, edge j+1); the last is [edge -1, inf)
_EM_ROUNDS = 30


def age_bin(age: float) -> int:
    """The bin that holds ``age`` (seconds)."""
    return max(0, min(_BINS - 1, bisect.bisect_right(_EDGES, age) - 1))


def edge(j: int) -> float:
    """The lower edge of bin ``j`` (the upper edge of bin ``j - 1``)."""
    return _EDGES[j] if j < _BINS else _EDGES[-1] * _RATIO


def _prior() -> list[float]:
    mu, sigma = math.log(PRIOR_MEDIAN), PRIOR_SIGMA

    def cdf(x: float) -> float:
        if x <= 0:
            return 0.0
        return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))

    masses = [cdf(edge(j + 1)) - cdf(edge(j)) for j in range(_BINS - 1)]
    masses.append(1.0 - cdf(edge(_BINS - 1)))
    total = sum(masses)
    return [m / total for m in masses]


_PRIOR = _prior()


class Plan:
    """Next poll ages: ``after(a)`` for a sync last seen running at age ``a``."""

    __slots__ = ("_next", "low", "mean")

    def __init__(self, next_edge: list[int], mean: float, low: float) -> None:
        self._next = next_edge
        #: The estimated mean duration, in seconds.
        self.mean = mean
        #: The estimated 5% quantile of the duration, in seconds.
        self.low = low

    def after(self, age: float) -> float:
        """The age at which to poll next (always above ``age``)."""
        j = age_bin(age)
        target = edge(self._next[j])
        return target if target > age else age + max(1.0, age * (_RATIO - 1.0))

    def same_as(self, other: Plan) -> bool:
        return self._next == other._next


class DurationEstimate:
    """Interval- and right-censored durations of one run, and their fitted distribution."""

    def __init__(self) -> None:
        # (low bin, high bin or -1 for "still running") -> count
        self._seen: Counter[tuple[int, int]] = Counter()
        self._p = list(_PRIOR)
        self.finished = 0
        self.running = 0

    def add(self, low: float, high: float | None) -> None:
        """A sync seen running at age ``low`` and finished by ``high`` (None: still
        running at ``low``)."""
        self._seen[self._key(low, high)] += 1
        if high is None:
            self.running += 1
        else:
            self.finished += 1

    def remove(self, low: float, high: float | None) -> None:
        """Forget an observation added before (a running sync seen again)."""
        key = self._key(low, high)
        self._seen[key] -= 1
        if self._seen[key] <= 0:
            del self._seen[key]
        if high is None:
            self.running -= 1
        else:
            self.finished -= 1

    @staticmethod
    def _key(low: float, high: float | None) -> tuple[int, int]:
        lo = age_bin(low)
        if high is None:
            return (lo, -1)
        return (lo, max(lo, age_bin(high)))

    def fit(self) -> list[float]:
        """Turnbull's EM from the last fit (warm start), with the prior as pseudo-counts;
        returns the mass of each bin."""
        groups = [(lo, _BINS - 1 if hi < 0 else hi, n) for (lo, hi), n in self._seen.items()]
        n_total = sum(n for _, _, n in groups)
        p = self._p
        for _ in range(_EM_ROUNDS):
            cumulative = [0.0]
            for mass in p:
                cumulative.append(cumulative[-1] + mass)
            spread = [0.0] * (_BINS + 1)
            for lo, hi, n in groups:
                inside = cumulative[hi + 1] - cumulative[lo]
                if inside <= 0:
                    continue
                share = n / inside
                spread[lo] += share
                spread[hi + 1] -= share
            weight, scale = 0.0, 1.0 / (n_total + PRIOR_WEIGHT)
            new = []
            for j in range(_BINS):
                weight += spread[j]
                new.append((p[j] * weight + PRIOR_WEIGHT * _PRIOR[j]) * scale)
            p = new
        self._p = p
        return p

    def plan(self, lag_share: float = LAG_SHARE) -> Plan:
        """The poll plan for the current fit (see the module doc)."""
        p = self.fit()
        # Within a bin the end is taken as uniform; the open last bin ends at its edge.
        centre = [(edge(j) + edge(j + 1)) / 2 for j in range(_BINS - 1)] + [edge(_BINS - 1)]
        mean = sum(m * c for m, c in zip(p, centre, strict=True))
        cost_of_lag = 1.0 / max(1.0, lag_share * mean)  # polls per second of lag
        mass = [0.0]
        moment = [0.0]
        for m, c in zip(p, centre, strict=True):
            mass.append(mass[-1] + m)
            moment.append(moment[-1] + m * c)
        survive = [1.0 - mass[j] for j in range(_BINS + 1)]  # running at edge j
        # cost[j]: the expected cost from "running at edge j" (unconditional units).
        cost = [0.0] * (_BINS + 1)
        best = [_BINS] * (_BINS + 1)
        for j in range(_BINS - 1, -1, -1):
            if survive[j] <= 1e-12:
                cost[j], best[j] = 0.0, j + 1
                continue
            lowest, choice = math.inf, j + 1
            for k in range(j + 1, _BINS + 1):
                ended = mass[k] - mass[j]
                lag = edge(k) * ended - (moment[k] - moment[j])
                total = survive[j] + cost_of_lag * lag + cost[k]
                if total < lowest:
                    lowest, choice = total, k
                if cost_of_lag * lag > lowest:
                    break  # the lag alone already costs more: later polls only lose
            cost[j], best[j] = lowest, choice
        low = edge(next(j for j in range(_BINS + 1) if mass[j + 1] >= 0.05))
        return Plan(best[:_BINS], mean, low)
