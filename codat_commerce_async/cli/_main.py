"""The argument parser and the entry point: one clear line on error, never a traceback.

Exit status: 0 when everything succeeded, 1 when anything failed (an API error, a
failed or unfinished sync, a failed company in a bulk run), 2 for a usage error,
130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from .._config import resolve_auth_header
from .._exceptions import CodatError, ConfigurationError
from .._version import __version__
from .._waiting import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_INTERVAL, DEFAULT_WAIT_TIMEOUT
from ._args import check_inputs
from ._output import PROG, error, note

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    """Options every command accepts, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON instead of tables",
    )
    return common


def _connection() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        help="Codat API key (default: the CODAT_API_KEY environment variable)",
    )
    parent.add_argument(
        "--base-url",
        default=argparse.SUPPRESS,
        help="API base URL (default: CODAT_BASE_URL or https://api.codat.io)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    common = _common()
    conn = _connection()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Trigger and watch Codat Sync for Commerce syncs.",
        parents=[common, conn],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="run the SDK against a local fake Codat (no account needed)",
        description="Trigger and wait for syncs of N generated companies against a fake "
        "Codat running in this process, with injected latency, 429s and 503s.",
    )
    demo.add_argument("--companies", type=_positive_int, default=1000, metavar="N")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.add_argument("--seed", type=int, default=None, help="seed for the injected faults")
    demo.add_argument(
        "--http-library",
        choices=("httpx", "httpx2"),
        default=None,
        help="the HTTP library to run on (default: CODAT_HTTP_LIBRARY, else httpx; "
        "httpx2 needs the [httpx2] extra)",
    )
    demo.set_defaults(handler=_lazy("_demo", "run"))

    sync = commands.add_parser("sync", help="talk to Codat's sync API")
    actions = sync.add_subparsers(dest="action", metavar="ACTION", required=True)
    leaf = [common, conn]

    request = actions.add_parser(
        "request", parents=leaf, help="sync a company from its last successful sync"
    )
    request.add_argument("company_id", metavar="COMPANY_ID")
    request.add_argument("--to", dest="sync_to", metavar="DATE", help="sync up to this date")
    request.add_argument("--idempotency-key", metavar="UUID", help="reuse this key (a retry)")
    request.set_defaults(handler=_lazy("_sync", "request"))

    window = actions.add_parser("range", parents=leaf, help="sync a company for a date range")
    window.add_argument("company_id", metavar="COMPANY_ID")
    window.add_argument("--start", required=True, metavar="DATE")
    window.add_argument("--finish", required=True, metavar="DATE")
    window.add_argument("--idempotency-key", metavar="UUID", help="reuse this key (a retry)")
    window.set_defaults(handler=_lazy("_sync", "date_range"))

    status = actions.add_parser(
        "status", parents=leaf, help="the status of a sync (default: the latest)"
    )
    status.add_argument("company_id", metavar="COMPANY_ID")
    status.add_argument("sync_id", metavar="SYNC_ID", nargs="?")
    status.set_defaults(handler=_lazy("_sync", "status"))

    overview = actions.add_parser(
        "company-status",
        parents=leaf,
        help="a company's sync status and data connections (get-sync-status)",
        description="GET /meta/companies/COMPANY_ID/sync/commerce/status: the status of "
        "syncing for the company and its data connections. Exit 1 when the sync failed.",
    )
    overview.add_argument("company_id", metavar="COMPANY_ID")
    overview.set_defaults(handler=_lazy("_sync", "company_status"))

    wait = actions.add_parser(
        "wait", parents=leaf, help="wait for a sync (default: the latest) to finish"
    )
    wait.add_argument("company_id", metavar="COMPANY_ID")
    wait.add_argument("sync_id", metavar="SYNC_ID", nargs="?")
    _poll_options(wait)
    wait.set_defaults(handler=_lazy("_sync", "wait"))

    bulk = actions.add_parser(
        "bulk",
        parents=leaf,
        help="sync every company in a file; resumable",
        description="Trigger a sync for every company id in FILE (CSV with a companyId / "
        "company_id / company / id column, or one id per line). Each company gets a 'started' line "
        "(with its idempotency key, written before the request) and a 'result' line in "
        "OUTPUT. Rerun the same command to resume: finished companies are skipped and "
        "unfinished ones reuse their recorded key, so no sync starts twice.",
    )
    bulk.add_argument("file", metavar="FILE")
    bulk.add_argument("--output", "-o", required=True, metavar="OUT.jsonl")
    bulk.add_argument("--to", dest="sync_to", metavar="DATE")
    bulk.add_argument("--start", metavar="DATE", help="with --finish: a date-range sync")
    bulk.add_argument("--finish", metavar="DATE")
    bulk.add_argument("--wait", action="store_true", help="also wait for each sync to finish")
    bulk.add_argument("--concurrency", type=_positive_int, default=10, metavar="N")
    bulk.add_argument(
        "--requests-per-minute",
        type=_positive_float,
        default=900.0,
        metavar="R",
        help="client-side rate limit for every request of the run (default 900)",
    )
    bulk.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _poll_options(bulk, max_default=None)
    bulk.set_defaults(handler=_lazy("_bulkfile", "run"))

    fleet = commands.add_parser("fleet", help="see a fleet sharing one RedisLimits")
    fleet_actions = fleet.add_subparsers(dest="action", metavar="ACTION", required=True)
    fleet_status = fleet_actions.add_parser(
        "status",
        parents=[common],
        help="the shared rate, the 429 gate, leases, the daily quota and the bulk pause",
        description="Read what the workers sharing one RedisLimits are doing, from Redis, "
        "with reads only: the shared rate (requests answered in the last minute vs the "
        "limit, per egress key), the 429 gate, trigger leases held (count, oldest), "
        "requests in flight, the daily quota learnt and whether bulk runs are paused.",
    )
    fleet_status.add_argument(
        "--redis-url",
        default=os.environ.get("CODAT_REDIS_URL"),
        required="CODAT_REDIS_URL" not in os.environ,
        metavar="URL",
        help="the fleet's Redis, as given to RedisLimits (default: CODAT_REDIS_URL)",
    )
    fleet_status.add_argument(
        "--prefix",
        default="codat",
        help="RedisLimits' prefix, one per account (default: %(default)s)",
    )
    fleet_status.add_argument(
        "--cluster", action="store_true", help="the URL names a node of a Redis Cluster"
    )
    fleet_status.add_argument(
        "--watch", action="store_true", help="a live view refreshed once a second (Ctrl-C stops)"
    )
    fleet_status.set_defaults(handler=_lazy("_fleet", "status"))

    fake = commands.add_parser(
        "fake-server",
        parents=[common],
        help="serve a fake Codat on a loopback port (for trying the CLI and SDK)",
        description="Serve the fake Codat Sync for Commerce API (the one in "
        "codat_commerce_async.testing) over HTTP until Ctrl-C. It prints its base URL and the "
        "credential it accepts once it is listening. Besides Codat's sync endpoints it "
        "answers GET /_fake/ledger (JSON: requests received and syncs started, per company), "
        "POST /_fake/reset (forget everything) and POST /_fake/webhooks (sign and deliver "
        "one webhook: JSON {url, secret, eventType, payload?, id?}) for tests in other "
        "processes. Needs "
        "uvicorn (pip install 'codat-commerce-async[fake-server]').",
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    fake.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    fake.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="delay added to every request (default: %(default)s)",
    )
    fake.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="share of requests answered with an HTML 503, 0 to 1 (default: %(default)s)",
    )
    fake.add_argument(
        "--sync-duration",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long each sync reports 'in progress' before it completes (default: %(default)s)",
    )
    fake.add_argument(
        "--seed", type=int, default=None, help="seed for --fail-rate (default: random)"
    )
    auth = fake.add_mutually_exclusive_group()
    auth.add_argument(
        "--api-key",
        dest="fake_api_key",
        default=None,
        metavar="KEY",
        help="the only API key accepted, as 'Authorization: Basic base64(KEY)' "
        "(default: fake-api-key)",
    )
    auth.add_argument(
        "--accept-any-auth",
        action="store_true",
        help="accept any non-empty Authorization header, e.g. the original SDK's examples' "
        "placeholder (default: off)",
    )
    fake.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="uvicorn's log level; info logs every request (default: %(default)s)",
    )
    fake.set_defaults(handler=_lazy("_demo", "fake_server"))
    return parser


def _lazy(module: str, name: str) -> Handler:
    """A handler imported when it runs (so ``--help`` stays quick)."""

    def handler(args: argparse.Namespace) -> int:
        target: Handler = getattr(importlib.import_module(f"{__package__}.{module}"), name)
        return target(args)

    return handler


def _poll_options(
    parser: argparse.ArgumentParser, max_default: float | None = DEFAULT_MAX_POLL_INTERVAL
) -> None:
    parser.add_argument(
        "--poll-interval", type=_positive_float, default=DEFAULT_POLL_INTERVAL, metavar="SECONDS"
    )
    parser.add_argument(
        "--max-poll-interval",
        type=_positive_float,
        default=max_default,
        metavar="SECONDS",
        help="the longest gap between two polls of a sync"
        + (" (default: the poll schedule decides)" if max_default is None else ""),
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=DEFAULT_WAIT_TIMEOUT, metavar="SECONDS"
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    handler: Handler = args.handler
    try:
        check_inputs(args)
        return handler(args)
    except KeyboardInterrupt:
        note(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except (CodatError, ValueError, OSError, ImportError, RuntimeError) as exc:
        error(str(exc))
        return EXIT_FAILED


def auth_header(args: argparse.Namespace) -> str:
    """The ``Authorization`` value from ``--api-key`` or ``CODAT_API_KEY`` (the
    library's own rule and checks), or a clear error naming the flag."""
    try:
        return resolve_auth_header(getattr(args, "api_key", None) or None, None)
    except ConfigurationError as exc:
        raise CodatError(f"{exc.args[0]} (here: --api-key)") from None


def base_url(args: argparse.Namespace) -> str | None:
    """``--base-url``, else None (the SDK then reads CODAT_BASE_URL)."""
    value: str | None = getattr(args, "base_url", None)
    return value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
