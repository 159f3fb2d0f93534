"""``codat-commerce fleet status``: what a fleet sharing one ``RedisLimits`` is doing,
read from Redis with reads only (SCAN, GET, HGETALL, PTTL, ZCARD, TIME; nothing written,
no script loaded), so it may run against production at any time.

The keys are those of ``_redis_limits`` (docs/scaling.md, "What is shared").
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from .._exceptions import CodatError
from .._redis_limits import _name, _tag
from ._main import EXIT_OK
from ._output import table

__all__ = ["status"]

_UTC = dt.timezone.utc


def _client(args: argparse.Namespace) -> Any:
    try:
        import redis
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        raise CodatError(
            "fleet status needs redis-py: pip install 'codat-commerce-async[redis]'"
        ) from None
    url = args.redis_url
    factory = redis.RedisCluster if args.cluster else redis.Redis
    try:
        client = factory.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    except Exception:
        client = None
    if client is None:
        # Outside the except block: nothing chained that could quote the URL's password.
        raise CodatError(
            "--redis-url must be a redis://, rediss:// or unix:// URL (value not shown)"
        )
    return client


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _when(ms: float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, _UTC).isoformat(timespec="seconds")


def read(client: Any, prefix: str) -> dict[str, Any]:
    """One reading of the fleet's state (reads only)."""
    tag = _tag(prefix)
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    now_s = int(seconds)

    def keys(kind: str) -> list[str]:
        pattern = f"{tag}:{kind}:*".replace("[", "\\[").replace("]", "\\]")
        return sorted({_text(k) for k in client.scan_iter(match=pattern, count=1000)})

    def rest(key: str, kind: str) -> str:
        return key[len(f"{tag}:{kind}:") :]

    egress: dict[str, dict[str, Any]] = {}
    for key in keys("sent"):
        tally = {_text(f): _text(v) for f, v in client.hgetall(key).items()}
        limit = float(tally.pop("limit", "0") or 0)
        used = sum(int(v) for f, v in tally.items() if f.isdigit() and int(f) > now_s - 60)
        egress[rest(key, "sent")] = {"used_last_minute": used, "limit_per_minute": limit}
    for key in keys("gate"):
        until_us = int(_text(client.get(key)) or 0)
        egress.setdefault(rest(key, "gate"), {})["gate_until_us"] = until_us
    for key in keys("rate"):
        egress.setdefault(rest(key, "rate"), {})
    rates = []
    for name, seen in sorted(egress.items()):
        until_us = seen.get("gate_until_us", 0)
        closed = until_us > now_ms * 1000
        rates.append(
            {
                "egress_key": name,
                "used_last_minute": seen.get("used_last_minute", 0),
                "limit_per_minute": seen.get("limit_per_minute"),
                "gate": "closed" if closed else "open",
                "gate_until": _when(until_us / 1000) if closed else None,
            }
        )
    ages = []
    for key in keys("trigger"):
        taken = _text(client.get(key)).partition("-")[0]
        if taken.isdigit():
            ages.append(max(0.0, (now_ms - int(taken)) / 1000))
    in_flight = sum(int(client.zcount(key, now_ms, "+inf")) for key in keys("requests"))
    quota = {_text(f): _text(v) for f, v in client.hgetall(f"{tag}:quota").items()}
    reset_ms = int(quota.get("reset") or -1)
    pause_ms = int(client.pttl(f"{tag}:pause"))
    return {
        "prefix": prefix,
        "read_at": _when(now_ms),
        "rates": rates,
        "leases": {"triggers": len(ages), "oldest_seconds": max(ages, default=None)},
        "requests_in_flight": in_flight,
        "daily_quota": {
            "remaining": int(quota["remaining"]) if "remaining" in quota else None,
            "limit": int(quota["limit"]) if int(quota.get("limit") or -1) >= 0 else None,
            "reset": _when(reset_ms) if reset_ms > 0 else None,
        },
        "bulk_runs_paused": pause_ms != -2,
        "paused_until": _when(now_ms + pause_ms) if pause_ms > 0 else None,
    }


def _rows(state: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("account (prefix)", state["prefix"]), ("read at (Redis clock)", state["read_at"])]
    if not state["rates"]:
        rows.append(("rate", "nothing recorded in the last minute"))
    for rate in state["rates"]:
        name = rate["egress_key"]
        limit = rate.get("limit_per_minute")
        used = rate.get("used_last_minute", 0)
        share = f" ({used / limit:.0%})" if limit else ""
        rows.append((f"rate {name}", f"{used:,} / {limit or 0:,.0f} a minute{share}"))
        gate = rate.get("gate", "open")
        rows.append(
            (
                f"429 gate {name}",
                f"closed until {rate['gate_until']}" if gate == "closed" else "open",
            )
        )
    leases = state["leases"]
    oldest = leases["oldest_seconds"]
    rows.append(
        (
            "trigger leases",
            f"{leases['triggers']}" + (f" (oldest {oldest:.1f} s)" if oldest is not None else ""),
        )
    )
    rows.append(("requests in flight", str(state["requests_in_flight"])))
    quota = state["daily_quota"]
    if quota["remaining"] is None:
        rows.append(("daily quota", "not learnt yet"))
    else:
        of = f" of {quota['limit']:,}" if quota["limit"] is not None else ""
        rows.append(("daily quota", f"{quota['remaining']:,}{of} left, resets {quota['reset']}"))
    paused = state["bulk_runs_paused"]
    until = state["paused_until"]
    rows.append(
        ("bulk runs", ("paused" + (f" until {until}" if until else "")) if paused else "running")
    )
    return rows


def status(args: argparse.Namespace) -> int:
    prefix = _name("--prefix", args.prefix)
    client = _client(args)
    try:
        if not args.watch:
            _show(read(client, prefix), as_json=args.json)
            return EXIT_OK
        if args.json or not sys.stdout.isatty():
            # One reading after another, once a second, until Ctrl-C (a live view needs
            # a terminal; JSON goes one object a line).
            while True:
                _show(read(client, prefix), as_json=args.json)
                time.sleep(1.0)
        return _live(client, prefix)
    except CodatError:
        raise
    except Exception as exc:
        # A Redis error's message never holds the password; its chain is not kept.
        message = f"cannot read the fleet's state from Redis ({type(exc).__name__}: {exc})"
    finally:
        client.close()
    raise CodatError(message)


def _show(state: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(state) + "\n")
        sys.stdout.flush()
    else:
        table(_rows(state), title="Codat fleet")


def _live(client: Any, prefix: str) -> int:
    from rich import box
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        grid = Table(box=box.SIMPLE, show_header=False, title="Codat fleet (Ctrl-C to stop)")
        grid.add_column(style="bold")
        grid.add_column()
        for key, value in _rows(read(client, prefix)):
            grid.add_row(key, value)
        return grid

    with Live(render(), refresh_per_second=4, auto_refresh=False) as live:
        while True:
            time.sleep(1.0)
            live.update(render(), refresh=True)
