"""Codat's limits shared by every process pointed at one Redis (the ``redis`` extra).

Keys (``P`` is ``prefix``, one Codat account; ``E`` is ``egress_key``, one public IP
address; ``C`` a company's canonical UUID)::

    {P}:rate:E          GCRA "theoretical arrival time", microseconds
    {P}:gate:E          429 gate: closed until this time, microseconds
    {P}:quota           hash: remaining, limit, reset (ms) of the daily quota
    {P}:trigger:C       one trigger in flight: a lease (token, TTL)
    {P}:requests:C      requests in flight: sorted set token -> expiry (ms)
    {P}:probe           written by ping() to check that Redis takes writes
    {P}:pause           present while bulk runs are paused fleet-wide (TTL: the end)
    {P}:sent:E          hash: requests answered per Redis second (the last minute), and
                        the ``limit`` they share, for ``codat-commerce fleet status``

The braces are literal: ``{P}`` is a Redis Cluster hash tag, so every key of one account
lives in one hash slot and any script may touch any of them. The scheme is injective:
``P`` cannot contain ``{`` or ``}`` (validation; :func:`_tag` escapes them regardless),
so the first ``}`` ends it; the kind after it is a fixed word without ``:``; ``E`` or
``C`` is the whole rest of the key. ``:`` in ``prefix`` or ``egress_key`` cannot make two
accounts share a key.

Every decision runs in one Lua script timed by Redis's ``TIME``: workers send durations,
never instants, so their clocks may disagree freely. Leases carry a TTL and are
refreshed while held, so a worker killed with SIGKILL frees them within ``lease_ttl``.

Failure modes (docs/scaling.md): a Redis that does not take a first write (unreachable,
a wrong password, a read-only replica, out of memory) raises
:class:`LimitsUnavailableError` before anything is sent; any Redis error later falls back
to in-process limits (at ``fallback_requests_per_minute``) with one warning, and every
``probe_interval`` seconds a write probes Redis again (only a write it takes ends the
fallback: a read-only or full Redis still answers reads and most scripts). A restarted
Redis has lost its state; the scripts start again from nothing (an empty rate key admits
one request at once, leases held before are gone, and the idempotency keys keep triggers
safe).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import sniffio

from ._exceptions import ConfigurationError, LimitsUnavailableError
from ._local_limits import LocalLimits
from ._protocol import _preview
from ._quota import (
    DEFAULT_QUOTA_RESERVE,
    SAME_PERIOD,
    QuotaDecision,
    QuotaSnapshot,
    decide,
    snapshot_from_headers,
    validate_reserve,
)
from ._ratelimit import validate_rate

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["RedisLimits"]

T = TypeVar("T")

logger = logging.getLogger("codat_commerce_async.limits")

_UTC = _dt.timezone.utc
_NAME = re.compile(r"[A-Za-z0-9._:\-]{1,200}")

# Admit one request: wait at a closed gate, else reserve the next GCRA slot.
# Returns {status, wait_us}: 1 = reserved (sleep wait_us, then send), 0 = gate closed
# (sleep wait_us, then ask again), -1 = the wait would exceed max_wait (nothing taken).
# ARGV[4] = 1 for a background request: it takes a slot only if one is free now (no
# foreground request of any worker has reserved ahead), else it is told to ask again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gate = tonumber(redis.call('GET', KEYS[2]) or '0')
local max_wait = tonumber(ARGV[3])
if gate > now then
  if max_wait >= 0 and gate - now > max_wait then return {-1, gate - now} end
  return {0, gate - now}
end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
if ARGV[4] == '1' and wait > 0 then return {0, math.max(wait, tonumber(ARGV[1]))} end
if max_wait >= 0 and wait > max_wait then return {-1, wait} end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {1, wait}
"""

# Close the gate for ARGV[1] microseconds from now (never shortens it).
_CLOSE_GATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < untl then
  local ttl = math.floor(tonumber(ARGV[1]) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', ttl)
end
return 1
"""

# Microseconds the gate stays closed (0: open).
_GATE_LEFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gate = tonumber(redis.call('GET', KEYS[1]) or '0')
if gate > now then return gate - now end
return 0
"""

# Take one of ARGV[2] request slots of a company for ARGV[3] ms (expired ones are dropped).
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# Extend a held slot (sorted-set member) or lease (string key) by ARGV[2] ms, if still ours.
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == 'slot' then
  if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ttl)
    return 1
  end
  return 0
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 1
end
return 0
"""

# Delete a lease only if it is still ours (it may have expired and been taken since).
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Merge one response's quota as _quota.merge does: ARGV = remaining, limit (-1: none),
# ms until the reset (-1: none; made absolute on this server's clock), same-period ms,
# the reset as Codat stated it (epoch ms, -1: none; kept for messages only).
_OBSERVE_QUOTA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 'remaining', 'reset')
local remaining = tonumber(ARGV[1])
local reset = -1000000000000000
if tonumber(ARGV[3]) >= 0 then reset = now + tonumber(ARGV[3]) end
local replace = cur[1] == false
if not replace then
  local cur_reset = tonumber(cur[2])
  if math.abs(reset - cur_reset) > tonumber(ARGV[4]) then
    replace = reset > cur_reset
  else
    replace = remaining < tonumber(cur[1])
  end
end
if replace then
  redis.call('HSET', KEYS[1], 'remaining', ARGV[1], 'limit', ARGV[2],
    'reset', string.format('%.0f', reset), 'stated', ARGV[5])
  local ttl = 86400000
  if reset > now then ttl = reset - now + 3600000 end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"""

# The shared quota and the server's time: {remaining or -1, limit, reset ms, now ms,
# stated reset ms}.
_READ_QUOTA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 'remaining', 'limit', 'reset', 'stated')
if cur[1] == false then return {-1, -1, -1, now, -1} end
return {tonumber(cur[1]), tonumber(cur[2]), tonumber(cur[3]), now, tonumber(cur[4])}
"""


# Count one answered request in this Redis second; drop seconds older than a minute (once
# a second, when a new second's field is made). ARGV[1]: the shared requests_per_minute.
_COUNT_SENT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local fresh = redis.call('HINCRBY', KEYS[1], sec, 1) == 1
redis.call('HSET', KEYS[1], 'limit', ARGV[1])
redis.call('PEXPIRE', KEYS[1], 120000)
if fresh then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    local n = tonumber(f)
    if n and n < sec - 60 then redis.call('HDEL', KEYS[1], f) end
  end
end
return 1
"""


def _redis_errors() -> tuple[type[BaseException], ...]:
    # Every redis-py error, not only the connection ones: a read-only replica
    # (ReadOnlyError), maxmemory with noeviction (OutOfMemoryError) or a key of the
    # wrong type are a Redis that cannot keep the limits, like an unreachable one.
    from redis.exceptions import RedisClusterException, RedisError

    # RedisClusterException (no cluster node reachable, a slot not covered) is not a
    # RedisError.
    return (RedisError, RedisClusterException, OSError)


def _describe(exc: BaseException) -> str:
    """What went wrong with Redis, for a message: the error's type and text, and for a
    TLS certificate that did not verify, our own words first. The password is in no
    redis-py message (it is in the connection's settings, never in its text)."""
    import ssl

    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen:
        seen.append(cause)
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "verification failed"
            return (
                f"the Redis server's TLS certificate did not verify ({reason}): give the CA "
                "that signed it with ssl_ca_certs= (or ?ssl_ca_certs= in the URL)"
            )
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}"


def _from_ms(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms / 1000, _UTC)


def refuse_non_asyncio(what: str = "RedisLimits") -> None:
    """Raise :class:`ConfigurationError` when running on an event loop other than asyncio."""
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    if library != "asyncio":
        raise ConfigurationError(
            f"{what} needs asyncio (redis-py's asyncio client), not {library}; "
            "under trio use the in-process limits"
        )


async def _until(attempt: Callable[[], Awaitable[object]]) -> bool:
    """Retry ``attempt`` until it returns something true, backing off to 0.25 s."""
    delay = 0.01
    while not await attempt():
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.25)
    return True


async def _no() -> bool:
    return False


def _register(redis: object, script: str) -> AsyncScript:
    # redis-py types register_script for Redis only; RedisCluster has it as well.
    client: Any = redis
    return cast("AsyncScript", client.register_script(script))


def _tls_options(url: object, redis: object, ca_file: str | None) -> dict[str, Any]:
    """``ssl_ca_certs`` for redis-py, checked before any I/O: a readable file, and a
    ``rediss://`` URL to use it with."""
    if ca_file is None:
        return {}
    if redis is not None:
        raise ConfigurationError(
            "ssl_ca_certs= goes with url=; a client passed as redis= brings its own TLS settings"
        )
    if not isinstance(url, str) or not url.lower().startswith("rediss://"):
        raise ConfigurationError("ssl_ca_certs= needs a rediss:// URL (Redis over TLS)")
    if not isinstance(ca_file, str) or not os.path.isfile(ca_file):
        raise ConfigurationError(
            f"ssl_ca_certs must name a readable PEM file (got {_preview(ca_file)})"
        )
    return {"ssl_ca_certs": ca_file}


def _name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        length = f", {len(value):,} characters" if isinstance(value, str) else ""
        raise ConfigurationError(
            f"{what} must be 1-200 characters of letters, digits and . _ : - "
            f"(got {_preview(value)}{length})"
        )
    return value


async def _settle_replaced_nodes() -> None:
    """Wait for redis-py's cluster client to finish disconnecting the nodes it replaced.

    When it learns the cluster's layout it disconnects the node objects it replaces in
    tasks it keeps no reference to (``NodesManager.set_nodes``); one collected before it
    ran leaves its socket open (a ``ResourceWarning``). Awaiting them closes the sockets."""
    import asyncio

    current = asyncio.current_task()
    pending = [
        task
        for task in asyncio.all_tasks()
        if task is not current
        and not task.done()
        and getattr(task.get_coro(), "__qualname__", "") == "ClusterNode.disconnect"
    ]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


def _tag(prefix: str) -> str:
    """The hash tag of one account's keys: ``{prefix}``, with ``%``, ``{`` and ``}``
    percent-escaped (validation already refuses them) so the tag always ends at its own
    ``}`` and two prefixes never share one."""
    escaped = prefix.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
    return "{" + escaped + "}"


def _url_client(factory: Any, url: object, **options: Any) -> Any:
    """A client for ``url`` (``factory`` is ``Redis`` or ``RedisCluster``), or None when
    redis-py cannot parse it. Nothing of the parser's error is kept: it may quote the
    password (``Port could not be cast``)."""
    try:
        # Short socket timeouts: a hung Redis must not hang Codat calls behind it.
        return factory.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, **options)
    except Exception:
        return None


class RedisLimits:
    """Codat's limits shared through Redis by every process (and machine) that uses it.

    Give every client of one fleet the same ``url`` and ``prefix`` (one per Codat
    account) and, per public IP address, the same ``egress_key``::

        limits = RedisLimits("redis://cache:6379/0", egress_key="nat-eu-1")
        async with AsyncSyncClient(api_key=..., limits=limits) as client: ...

    Args:
        url: a ``redis://`` or ``rediss://`` (TLS) URL, or pass ``redis=``, a
            ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` you own.
        cluster: ``url`` names a node of a Redis Cluster (the others are discovered).
        ssl_ca_certs: a PEM file of the CA that signed the server's TLS certificate,
            when it is not one the system trusts (``rediss://`` only).
        egress_key: names the IP address Codat sees; processes behind one NAT share it.
        requests_per_minute: the shared rate for that IP (Codat allows 1,000; default 900).
        burst: requests that may go back to back after a quiet spell (default 1).
        per_company_concurrency: requests in flight per company (Codat allows 10).
        lease_ttl: seconds a dead worker's leases outlive it (refreshed while held).
        quota_reserve: daily-quota requests bulk runs leave for interactive calls.
        prefix: the key prefix; one per Codat account.
        fallback_requests_per_minute: the in-process rate while Redis is unreachable
            (default: a quarter of ``requests_per_minute``; set it to your share).
        probe_interval: seconds between attempts to get back to Redis.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        egress_key: str,
        redis: Redis | RedisCluster | None = None,
        requests_per_minute: float = 900.0,
        burst: int = 1,
        per_company_concurrency: int = 10,
        lease_ttl: float = 30.0,
        quota_reserve: int = DEFAULT_QUOTA_RESERVE,
        prefix: str = "codat",
        fallback_requests_per_minute: float | None = None,
        probe_interval: float = 5.0,
        cluster: bool = False,
        ssl_ca_certs: str | None = None,
    ) -> None:
        refuse_non_asyncio()
        try:
            from redis.asyncio import Redis as _Redis
            from redis.asyncio import RedisCluster as _RedisCluster
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "RedisLimits needs redis-py: pip install 'codat-commerce-async[redis]'"
            ) from exc
        if (url is None) == (redis is None):
            raise ConfigurationError("pass exactly one of url= or redis=")
        rate = validate_rate("requests_per_minute", requests_per_minute)
        assert rate is not None
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigurationError("burst must be an integer >= 1")
        if (
            isinstance(per_company_concurrency, bool)
            or not isinstance(per_company_concurrency, int)
            or per_company_concurrency < 1
        ):
            raise ConfigurationError("per_company_concurrency must be an integer >= 1")
        for what, seconds in (("lease_ttl", lease_ttl), ("probe_interval", probe_interval)):
            if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
                raise ConfigurationError(f"{what} must be a positive number of seconds")
        fallback = validate_rate("fallback_requests_per_minute", fallback_requests_per_minute)
        self.egress_key = _name("egress_key", egress_key)
        self.prefix = _name("prefix", prefix)
        self.requests_per_minute = rate
        self.burst = burst
        self.per_company_concurrency = per_company_concurrency
        self.lease_ttl = float(lease_ttl)
        self.quota_reserve = validate_reserve(quota_reserve)
        self.fallback_requests_per_minute = fallback if fallback is not None else rate / 4
        self.probe_interval = float(probe_interval)
        options = _tls_options(url, redis, ssl_ca_certs)
        if redis is None:
            redis = _url_client(_RedisCluster if cluster else _Redis, url, **options)
            has_password = isinstance(url, str) and "@" in url
            del url  # may carry a password: not in a traceback rendered with locals
            if redis is None:
                # Raised outside any except block: no __context__ to quote the URL.
                hint = (
                    "; percent-encode / # ? @ : in the password (urllib.parse.quote(pw, safe=''))"
                    if has_password
                    else ""
                )
                raise ConfigurationError(
                    f"url must be a redis://, rediss:// or unix:// URL (value not shown){hint}"
                )
            self._owns_redis = True
        elif not isinstance(redis, (_Redis, _RedisCluster)):
            raise ConfigurationError(
                "redis= must be a redis.asyncio.Redis or redis.asyncio.RedisCluster client"
            )
        else:
            self._owns_redis = False
        self.cluster = isinstance(redis, _RedisCluster)
        self.redis = redis
        self._interval_us = 60_000_000.0 / rate
        self._tolerance_us = self._interval_us * (burst - 1)
        self._tag = _tag(prefix)
        self._rate_key = f"{self._tag}:rate:{egress_key}"
        self._gate_key = f"{self._tag}:gate:{egress_key}"
        self._quota_key = f"{self._tag}:quota"
        self._acquire = _register(redis, _ACQUIRE)
        self._close_gate = _register(redis, _CLOSE_GATE)
        self._gate_left = _register(redis, _GATE_LEFT)
        self._take_slot = _register(redis, _TAKE_SLOT)
        self._refresh = _register(redis, _REFRESH)
        self._release_lease = _register(redis, _RELEASE_LEASE)
        self._observe = _register(redis, _OBSERVE_QUOTA)
        self._read_quota = _register(redis, _READ_QUOTA)
        self._count_sent = _register(redis, _COUNT_SENT)
        self._local = LocalLimits(
            self.fallback_requests_per_minute,
            per_company_concurrency=per_company_concurrency,
            quota_reserve=self.quota_reserve,
        )
        self._reached = False  # Redis answered at least once
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._held: dict[str, tuple[str, str]] = {}  # token -> (key, "slot" | "lease")
        self._heartbeat: Any = None  # asyncio.Task refreshing the held leases
        self._triggering: dict[str, str] = {}  # trigger lease key -> our token
        self._pause_read_at = -math.inf  # the fleet-wide pause, as last read
        self._pause_left = 0.0

    def __repr__(self) -> str:
        return (
            f"RedisLimits(egress_key={self.egress_key!r}, prefix={self.prefix!r}, "
            f"requests_per_minute={self.requests_per_minute:g})"
        )

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and the in-process fallback is in use."""
        return self._down_since is not None

    # -- Redis access, with the fallback ------------------------------------------------

    async def _shared(
        self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        """Run ``shared`` on Redis, or ``local`` while Redis is down (see the module doc)."""
        refuse_non_asyncio()
        if self._down_since is not None:
            if time.monotonic() < self._retry_at:
                return await local()
            # One caller probes; the others stay in-process until it has an answer.
            self._retry_at = time.monotonic() + self.probe_interval
            if await self._probe() is not None:
                self._retry_at = time.monotonic() + self.probe_interval
                return await local()
            down_since = self._down_since
            if down_since is not None:  # None: another caller's probe got there first
                logger.warning(
                    "Redis takes writes again after %.1f s: shared limits restored",
                    time.monotonic() - down_since,
                )
                self._down_since = None
        elif not self._reached:
            failure = await self._probe()
            if failure is not None:
                # Raised outside any except block: the redis-py error (whose frames hold
                # the connection's settings, password included) is chained to nothing.
                raise LimitsUnavailableError(
                    f"cannot use Redis for the shared Codat limits ({failure}); nothing was sent"
                )
            self._reached = True
            if self.cluster:
                await _settle_replaced_nodes()
        try:
            return await shared()
        except _redis_errors() as exc:
            failure = _describe(exc)
        if self._down_since is None:
            logger.warning(
                "Redis unavailable (%s): using in-process limits at %g requests a minute "
                "until it takes writes again",
                failure,
                self.fallback_requests_per_minute,
            )
            self._down_since = time.monotonic()
        self._retry_at = time.monotonic() + self.probe_interval
        return await local()

    async def _probe(self) -> str | None:
        """Write a short-lived key: None if Redis took it, else what went wrong. A script
        succeeding proves little (most write only sometimes), and a read-only replica or
        a Redis at ``maxmemory`` still answers reads."""
        try:
            await self._write_probe()
        except _redis_errors() as exc:
            return _describe(exc)
        return None

    async def _write_probe(self) -> None:
        await self.redis.set(f"{self._tag}:probe", "1", px=60_000)

    async def ping(self) -> None:
        """Check now that Redis takes writes (a read-only replica or a full Redis does
        not). Raises :class:`LimitsUnavailableError` if it never has; later, a failure
        starts the in-process fallback, as any Redis error does."""

        async def nothing() -> None:
            return None

        await self._shared(self._write_probe, nothing)

    # -- the operations the client uses ---------------------------------------------------

    async def acquire(self, max_wait: float | None = None, *, background: bool = False) -> bool:
        """Wait at the shared 429 gate, then for the next slot of the shared rate.

        Returns False at once, taking nothing, if that would take over ``max_wait`` s.
        ``background``: take a slot only when the fleet's rate has one free now (a
        bulk run's status polls; every foreground request goes first).
        """
        budget_us = -1 if max_wait is None or background else max(0, int(max_wait * 1_000_000))
        while True:
            status, wait_us = await self._shared(
                functools.partial(self._acquire_shared, budget_us, background),
                functools.partial(self._acquire_local, budget_us, background),
            )
            if status < 0:
                return False
            if wait_us > 0:
                await anyio.sleep(wait_us / 1_000_000)
            if status == 1:
                return True
            if budget_us >= 0:  # waited at the gate: that counts against max_wait
                budget_us = max(0, budget_us - wait_us)

    async def _acquire_shared(self, budget_us: int, background: bool) -> tuple[int, int]:
        status, wait_us = await self._acquire(
            keys=[self._rate_key, self._gate_key],
            args=[
                f"{self._interval_us:.3f}",
                f"{self._tolerance_us:.3f}",
                budget_us,
                int(background),
            ],
        )
        return int(status), int(wait_us)

    async def _acquire_local(self, budget_us: int, background: bool) -> tuple[int, int]:
        left = None if budget_us < 0 else budget_us / 1_000_000
        return (1 if await self._local.acquire(left, background=background) else -1), 0

    async def close_gate(self, seconds: float) -> None:
        """A 429 said ``Retry-After: seconds``: pause every process sharing this IP."""
        micros = max(0, int(seconds * 1_000_000))

        async def shared() -> None:
            await self._close_gate(keys=[self._gate_key], args=[micros])

        async def local() -> None:
            await self._local.close_gate(seconds)

        await self._shared(shared, local)

    async def gate_left(self) -> float:
        """Seconds the shared 429 gate stays closed (0 when open)."""

        async def shared() -> float:
            return int(await self._gate_left(keys=[self._gate_key])) / 1_000_000

        async def local() -> float:
            return 0.0

        return await self._shared(shared, local)

    @contextlib.asynccontextmanager
    async def company_slot(self, company_id: str) -> AsyncIterator[None]:
        """Hold one of ``per_company_concurrency`` request slots of a company."""
        release = await self.take_company_slot(company_id)
        try:
            yield
        finally:
            await release()

    async def take_company_slot(self, company_id: str) -> Callable[[], Awaitable[None]]:
        """Take a request slot of a company; returns the coroutine function that gives
        it back (for callers that release in a plain ``finally``)."""
        key = f"{self._tag}:requests:{company_id}"
        token = uuid.uuid4().hex
        ttl_ms = int(self.lease_ttl * 1000)

        def take() -> Awaitable[object]:
            return self._take_slot(keys=[key], args=[token, self.per_company_concurrency, ttl_ms])

        if await self._shared(functools.partial(_until, take), _no):
            self._hold(token, key, "slot")
            return functools.partial(self._let_go, token, key, "slot")
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(self._local.company_slot(company_id))
        return stack.aclose

    @contextlib.asynccontextmanager
    async def trigger_lease(self, company_id: str) -> AsyncIterator[None]:
        """Be the only process triggering this company until the block ends."""
        key = f"{self._tag}:trigger:{company_id}"
        # When it was taken (this machine's clock; read by `fleet status` only) + a nonce.
        token = f"{int(time.time() * 1000)}-{uuid.uuid4().hex}"
        ttl_ms = int(self.lease_ttl * 1000)

        def take() -> Awaitable[object]:
            return self.redis.set(key, token, nx=True, px=ttl_ms)

        if await self._shared(functools.partial(_until, take), _no):
            self._hold(token, key, "lease")
            self._triggering[key] = token
            try:
                yield
            finally:
                if self._triggering.get(key) == token:
                    del self._triggering[key]
                await self._let_go(token, key, "lease")
        else:
            async with self._local.trigger_lease(company_id):
                yield

    async def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the daily quota from one response's ``X-Rate-Limit-*`` headers."""
        now = _dt.datetime.now(_UTC)
        seen = snapshot_from_headers(headers, now)
        if seen is None:
            return
        # A duration, not an instant: Redis adds it to its own clock.
        due = seen.resets
        reset_in = -1.0 if due is None else max(0.0, (due - now).total_seconds())
        reset_ms = -1 if reset_in < 0 else int(reset_in * 1000)
        limit = -1 if seen.limit is None else seen.limit
        period_ms = int(SAME_PERIOD * 1000)
        stated = -1 if seen.reset_at is None else int(seen.reset_at.timestamp() * 1000)

        async def shared() -> None:
            await self._observe(
                keys=[self._quota_key], args=[seen.remaining, limit, reset_ms, period_ms, stated]
            )

        async def local() -> None:
            await self._local.observe(headers)

        await self._shared(shared, local)

    async def quota_decision(self) -> QuotaDecision:
        """May a bulk run start another trigger? Decided on the shared quota and the
        Redis server's clock."""

        async def shared() -> QuotaDecision:
            remaining, limit, reset_ms, now_ms, stated_ms = (
                int(v) for v in await self._read_quota(keys=[self._quota_key])
            )
            now = _from_ms(now_ms)
            if remaining < 0:
                return decide(None, now, reserve=self.quota_reserve)
            snapshot = QuotaSnapshot(
                remaining,
                None if limit < 0 else limit,
                reset_at=None if stated_ms < 0 else _from_ms(stated_ms),
                due=None if reset_ms < 0 else _from_ms(reset_ms),
            )
            return decide(snapshot, now, reserve=self.quota_reserve)

        return await self._shared(shared, self._local.quota_decision)

    async def disconnect(self) -> None:
        """Drop the idle pooled Redis connections (they reconnect on next use, on whichever
        event loop uses them). A client calls this when it closes; connections another
        client sharing these limits is using are left alone."""
        with contextlib.suppress(*_redis_errors()):
            if self.cluster:
                # A cluster client keeps a pool per node and cannot tell idle ones apart:
                # it reconnects on next use whatever is dropped.
                cluster: Any = self.redis
                for node in cluster.get_nodes():
                    await node.disconnect()
                await _settle_replaced_nodes()
            else:
                single: Any = self.redis
                await single.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        """Stop refreshing leases and close the Redis connection (if this object made it)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(BaseException):
                await self._heartbeat
            self._heartbeat = None
        if self._owns_redis:
            await self.redis.aclose()
        if self.cluster:
            await _settle_replaced_nodes()

    # -- leases -----------------------------------------------------------------------

    def _hold(self, token: str, key: str, kind: str) -> None:
        self._held[token] = (key, kind)
        if self._heartbeat is None or self._heartbeat.done():
            import asyncio

            self._heartbeat = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _let_go(self, token: str, key: str, kind: str) -> None:
        self._held.pop(token, None)
        if self._down_since is not None and time.monotonic() < self._retry_at:
            return  # Redis is down: the lease expires by itself, do not wait on it here
        with anyio.CancelScope(shield=True), contextlib.suppress(*_redis_errors()):
            if kind == "slot":
                await self.redis.zrem(key, token)
            else:
                await self._release_lease(keys=[key], args=[token])

    async def refresh_leases(self) -> int:
        """Extend every lease and slot this object holds to a full ``lease_ttl``; returns
        how many are still ours. Runs by itself every third of ``lease_ttl`` while any
        is held, so only a dead (or frozen) process lets its leases expire."""
        ttl_ms = int(self.lease_ttl * 1000)
        kept = 0
        for token, (key, kind) in list(self._held.items()):
            with contextlib.suppress(*_redis_errors()):
                kept += int(await self._refresh(keys=[key], args=[token, ttl_ms, kind]))
        return kept

    async def _refresh_forever(self) -> None:
        while self._held:
            await anyio.sleep(self.lease_ttl / 3)
            await self.refresh_leases()

    # -- confirming a trigger lease right before the trigger is sent ---------------------

    async def confirm_trigger_lease(self, company_id: str) -> None:
        """Right before a trigger of ``company_id`` goes on the wire: make sure this
        process still holds the company's trigger lease (extending it to a full
        ``lease_ttl``), or wait to take it again.

        The heartbeat keeps a lease while the process runs; a process frozen (SIGSTOP, a
        paused VM, a long GC) for over ``lease_ttl`` loses it, and another may have
        taken it and be triggering the company. Without this check the frozen process
        would send its trigger as soon as it runs again; with it, it waits its turn.
        What is left is the send itself: a process frozen between this check and its
        request reaching Codat for over ``lease_ttl`` can still overlap another's trigger
        (the same idempotency key then makes the second a replay).
        """
        key = f"{self._tag}:trigger:{company_id}"
        token = self._triggering.get(key)
        if token is None:
            return  # not inside trigger_lease (an interactive call): nothing to confirm
        ttl_ms = int(self.lease_ttl * 1000)

        async def refresh() -> int:
            return int(await self._refresh(keys=[key], args=[token, ttl_ms, "lease"]))

        if await self._shared(refresh, _one):
            return
        logger.warning(
            "the trigger lease of company %s expired while this process was stalled "
            "(over lease_ttl=%g s); waiting for it before triggering",
            company_id,
            self.lease_ttl,
        )

        def take() -> Awaitable[object]:
            return self.redis.set(key, token, nx=True, px=ttl_ms)

        await self._shared(functools.partial(_until, take), _no)

    # -- the fleet-wide pause (Codat's daily-quota webhooks) ------------------------------
    #
    # One key per account, ``{P}:pause``, present while bulk runs are paused; its TTL is
    # the pause's end. Every process reads it before a bulk run takes a company, at most
    # every PAUSE_POLL seconds, so a pause (or its end) reaches the whole fleet within
    # PAUSE_POLL plus a round trip, and a restarted worker starts paused.

    PAUSE_POLL = 0.5
    """Seconds between two reads of the shared pause by one process."""

    PAUSE_AT_MOST = 25 * 3600.0
    """A pause without an end lasts until resumed or this long (the daily quota resets at
    00:00 UTC, so a lost ``client.rateLimit.reset`` must not hold a fleet forever)."""

    @property
    def _pause_key(self) -> str:
        return f"{self._tag}:pause"

    async def pause_bulk_runs(self, seconds: float | None) -> None:
        """Pause every process's bulk runs for ``seconds`` (None: until
        :meth:`resume_bulk_runs`, at most :attr:`PAUSE_AT_MOST`)."""
        ttl = self.PAUSE_AT_MOST if seconds is None else min(seconds, self.PAUSE_AT_MOST)

        async def shared() -> None:
            if ttl > 0:
                await self.redis.set(self._pause_key, "1", px=max(1, int(ttl * 1000)))
            else:
                await self.redis.delete(self._pause_key)

        await self._shared(shared, _nothing)
        self._pause_read_at = -math.inf  # read it afresh

    async def resume_bulk_runs(self) -> None:
        """End the fleet-wide pause now (every process sees it within :attr:`PAUSE_POLL`)."""

        async def shared() -> None:
            await self.redis.delete(self._pause_key)

        await self._shared(shared, _nothing)
        self._pause_read_at = -math.inf

    async def bulk_pause_left(self) -> float:
        """Seconds the fleet-wide pause lasts (0: not paused), read from Redis now."""

        async def shared() -> float:
            ms = int(await self.redis.pttl(self._pause_key))
            if ms == -1:  # set by hand without a TTL: paused until resumed
                return math.inf
            return max(0.0, ms / 1000)

        async def local() -> float:
            return 0.0  # Redis down: only this process's own pause holds

        left = await self._shared(shared, local)
        self._pause_read_at = time.monotonic()
        self._pause_left = left
        return left

    @property
    def bulk_runs_paused(self) -> bool:
        """True if the fleet-wide pause held at the last read (at most
        :attr:`PAUSE_POLL` ago while bulk runs go on)."""
        elapsed = time.monotonic() - self._pause_read_at
        return self._pause_left > elapsed

    async def wait_unpaused(self) -> bool:
        """Return once the fleet-wide pause is over (at once when there is none);
        True if it waited. Reads Redis at most every :attr:`PAUSE_POLL` seconds."""
        waited = False
        while True:
            elapsed = time.monotonic() - self._pause_read_at
            if elapsed >= self.PAUSE_POLL:
                try:
                    left = await self.bulk_pause_left()
                except LimitsUnavailableError:
                    # Redis never took a write: the company's own calls say so, each in
                    # its result, as without the pause.
                    left = 0.0
            else:
                left = max(0.0, self._pause_left - elapsed)
            if left <= 0:
                break
            if not waited:
                logger.info("bulk runs paused fleet-wide (%s)", _pause_for(left))
                waited = True
            await anyio.sleep(min(left, self.PAUSE_POLL))
        if waited:
            logger.info("bulk runs resumed fleet-wide")
        return waited

    # -- what `codat-commerce fleet status` reads -----------------------------------------

    async def count_sent(self) -> None:
        """Count one answered request in the shared per-second tally (``{P}:sent:E``)."""
        key = f"{self._tag}:sent:{self.egress_key}"

        async def shared() -> None:
            await self._count_sent(keys=[key], args=[f"{self.requests_per_minute:g}"])

        await self._shared(shared, _nothing)


async def _nothing() -> None:
    return None


async def _one() -> int:
    return 1


def _pause_for(seconds: float) -> str:
    return "until resumed" if math.isinf(seconds) else f"{seconds:.0f} s left"
