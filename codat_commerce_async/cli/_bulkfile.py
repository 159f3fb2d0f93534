"""``codat-commerce sync bulk FILE --output OUT.jsonl``: a resumable bulk run.

The output file is also the run's journal, one JSON object a line, flushed as written:

- ``{"event": "started", "company_id": ..., "idempotency_key": ...}`` is written
  *before* the company's request is sent;
- ``{"event": "result", "company_id": ..., "ok": ..., ...}`` once it is known.

Every record starts on its own line; a torn last line (a killed run) is skipped, which
is safe because a ``started`` record is complete on disk before its request is sent.
Rerunning the same command reads the journal first: companies with an ``ok`` result
are skipped; the others are sent again with the key recorded for them, so a request
that reached Codat before an interruption is answered from Codat's idempotency cache
(for 90 minutes) instead of starting a second sync. Only after a definite refusal
(a 4xx other than 408/409/429: nothing was started) does a company get a fresh key.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import anyio

from .._bulk import BulkProgress, BulkResult, BulkRun, ProgressCallback
from .._client import AsyncSyncClient
from .._exceptions import APIStatusError
from .._protocol import canonical_company_id, new_idempotency_key
from .._retry import may_resend_with_new_key
from ._main import EXIT_FAILED, EXIT_OK
from ._output import describe, emit, note, progress_bar
from ._sync import client_for

__all__ = ["Journal", "read_company_ids", "read_company_ids_counted", "run"]

_HEADER_NAMES = {"companyid", "company", "id"}
_UUID_LIKE = re.compile(r"^\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?")


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().lower())


def read_company_ids(path: Path) -> list[str]:
    """Company ids from a CSV (a column named like companyId/company_id/id) or a file
    with one id per line. Blank lines and ``#`` comments are skipped; the ids are
    returned in order, each once (see :func:`read_company_ids_counted`)."""
    return read_company_ids_counted(path)[0]


def read_company_ids_counted(path: Path) -> tuple[list[str], int]:
    """The ids of :func:`read_company_ids` and how many repeats were dropped.

    A CSV needs a header naming its id column (companyId, company_id, company or id)
    or, without a header, a column of UUIDs; anything else is refused with
    ``ValueError`` naming the columns found, rather than guessing a column.
    """
    text = path.read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip() and line.strip()[0] != "#"]
    if not lines:
        return [], 0
    first = lines[0]
    if any(sep in first for sep in ",;\t"):
        rows = _csv_rows(path, text, lines)
        column = _id_column(rows[0])
        if column is not None:
            rows = rows[1:]
        else:
            column = next((i for i, cell in enumerate(rows[0]) if _UUID_LIKE.match(cell)), None)
        if column is None:
            found = ", ".join(repr(cell.strip()) for cell in rows[0])
            raise ValueError(
                f"{path}: no company id column; name one companyId, company_id, company or id "
                f"(columns found: {found})"
            )
        ids = [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    else:
        ids = [line.strip() for line in lines]
        if _normalise(ids[0]) in _HEADER_NAMES or _normalise(ids[0]) == "companyids":
            ids = ids[1:]
    unique = list(dict.fromkeys(_canonical(company) for company in ids))
    return unique, len(ids) - len(unique)


def _csv_rows(path: Path, text: str, lines: list[str]) -> list[list[str]]:
    """The rows of a CSV of company ids, or a ValueError naming the line at fault (raised
    outside the ``except``: the csv module's own error says less)."""
    reader = None
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
        reader = csv.reader(io.StringIO("\n".join(lines)), dialect)
        return list(reader)
    except csv.Error:
        row = reader.line_num if reader is not None else 1
    limit = csv.field_size_limit()
    too_long = next((n for n, line in enumerate(text.splitlines(), 1) if len(line) > limit), None)
    if too_long is not None:
        raise ValueError(
            f"{path}: line {too_long} holds a field longer than {limit:,} characters; "
            "this is not a file of company ids"
        )
    raise ValueError(f"{path}: row {row} is not readable as CSV (check its quoting)")


def _id_column(header: list[str]) -> int | None:
    names = [_normalise(cell) for cell in header]
    for wanted in ("companyid", "company", "id"):
        if wanted in names:
            return names.index(wanted)
    return None


@dataclass
class Journal:
    """What an output file already says: finished companies and the keys to reuse."""

    done: set[str] = field(default_factory=set)
    keys: dict[str, str] = field(default_factory=dict)
    skipped_lines: int = 0

    @classmethod
    def load(cls, path: Path) -> Journal:
        """Read ``path`` (missing: empty). A torn last line (a killed run) is skipped."""
        journal = cls()
        if not path.exists():
            return journal
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    entry = json.loads(line)
                    company = entry["company_id"]
                    event = entry["event"]
                except (ValueError, KeyError, TypeError, RecursionError):
                    journal.skipped_lines += 1
                    continue
                wrong = _wrongly_typed(entry)
                if wrong is not None:
                    # Not a torn line: a record this tool did not write. Guessing could
                    # lose a recorded key (and start a second sync), so stop here.
                    raise ValueError(
                        f"{path}: line {number}: {wrong} is not a string, so this is not a "
                        "journal written by codat-commerce (or it was edited); fix that line "
                        "or write to another --output"
                    )
                if event == "started" and entry.get("idempotency_key"):
                    journal.keys[company] = entry["idempotency_key"]
                elif event == "result":
                    if entry.get("ok"):
                        journal.done.add(company)
                    elif entry.get("fresh_key_safe"):
                        journal.keys.pop(company, None)
        return journal


def _wrongly_typed(entry: dict[str, Any]) -> str | None:
    """The first journal field that is not a string (``idempotency_key`` may be null)."""
    for name in ("company_id", "event"):
        if not isinstance(entry[name], str):
            return name
    key = entry.get("idempotency_key")
    return "idempotency_key" if key is not None and not isinstance(key, str) else None


class _Writer:
    """Appends journal lines, flushed one by one."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    @staticmethod
    def open(path: Path) -> IO[str]:
        """Open the journal for appending, so that the next record starts on its own
        line: after a killed run the file may end in a torn line, and a record glued to
        it would be unreadable (and its key forgotten on the next resume)."""
        stream = path.open("a", encoding="utf-8")
        try:
            if stream.tell() > 0:
                with path.open("rb") as raw:
                    raw.seek(-1, 2)
                    if raw.read(1) != b"\n":
                        stream.write("\n")
                        stream.flush()
        except BaseException:
            stream.close()
            raise
        return stream

    def write(self, entry: dict[str, Any]) -> None:
        entry["at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._stream.write(json.dumps(entry, default=str) + "\n")
        self._stream.flush()


def result_entry(result: BulkResult) -> dict[str, Any]:
    """The ``result`` line of one company."""
    error = result.error
    status_code = error.status_code if isinstance(error, APIStatusError) else None
    status = result.status
    summary = result.summary
    return {
        "event": "result",
        "company_id": result.company_id,
        "ok": result.ok,
        "idempotency_key": result.idempotency_key,
        "attempts": result.attempts,
        "sync_id": result.sync_id,
        "sync_status_code": (
            status.sync_status_code
            if status is not None
            else summary.sync_status_code
            if summary is not None
            else None
        ),
        "sync_status": (
            status.sync_status
            if status is not None
            else summary.sync_status
            if summary is not None
            else None
        ),
        "error_type": type(error).__name__ if error is not None else None,
        "error": str(error) if error is not None else None,
        "status_code": status_code,
        "fresh_key_safe": _fresh_key_safe(result),
    }


def _fresh_key_safe(result: BulkResult) -> bool:
    """True when the trigger certainly started nothing, so a rerun may use a new key."""
    if result.summary is not None or result.error is None:
        return False  # the trigger was answered 200: the sync exists
    return may_resend_with_new_key(result.error)


def _canonical(company: str) -> str:
    try:
        return canonical_company_id(company)
    except ValueError:
        return company  # reported as an invalid id by the run


def run(args: argparse.Namespace) -> int:
    """Run (or resume) a bulk sync; exit 1 if any company failed."""
    if (args.start is None) != (args.finish is None):
        raise ValueError("--start and --finish go together")
    if args.start is not None and args.sync_to is not None:
        raise ValueError("use either --to or --start/--finish")
    ids, duplicates = read_company_ids_counted(Path(args.file))
    if duplicates and not args.json:
        note(f"{duplicates:,} duplicate company ids in {args.file} dropped (each is synced once)")
    output = Path(args.output)
    journal = Journal.load(output)
    todo = [company for company in ids if company not in journal.done]
    skipped = len(ids) - len(todo)
    if skipped and not args.json:
        note(f"resuming: {skipped:,} of {len(ids):,} companies already done in {output}")
    client = client_for(args)
    writer: _Writer | None = None
    totals = {"succeeded": 0, "failed": 0}
    show = not args.no_progress and not args.json
    bar: dict[str, Callable[[int, int, str], None]] = {}

    def key_for(company: str) -> str:
        # Called by the run just before the company's request: record the key first.
        assert writer is not None
        key = journal.keys.get(company) or new_idempotency_key()
        journal.keys[company] = key
        writer.write({"event": "started", "company_id": company, "idempotency_key": key})
        return key

    def on_progress(progress: BulkProgress) -> None:
        if "update" in bar:
            bar["update"](progress.done, progress.failed, describe(progress) if args.wait else "")

    bulk = _start(client, args, todo, key_for, on_progress)  # bad dates fail here

    async def main() -> None:
        assert writer is not None
        async with client, bulk as results:
            async for result in results:
                writer.write(result_entry(result))
                totals["succeeded" if result.ok else "failed"] += 1

    started = time.perf_counter()
    with (
        _Writer.open(output) as stream,
        progress_bar("syncing", len(todo), enabled=show) as bar["update"],
    ):
        writer = _Writer(stream)
        try:
            anyio.run(main)
        except KeyboardInterrupt:
            note(f"stopped; {output} is up to date: rerun the same command to resume")
            raise
    summary = {
        "companies": len(ids),
        "duplicates_dropped": duplicates,
        "skipped_already_done": skipped,
        "succeeded": totals["succeeded"],
        "failed": totals["failed"],
        "output": str(output),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    emit(summary, as_json=args.json, title="bulk sync")
    return EXIT_FAILED if totals["failed"] else EXIT_OK


def _start(
    client: AsyncSyncClient,
    args: argparse.Namespace,
    todo: list[str],
    key_for: Callable[[str], str],
    on_progress: ProgressCallback,
) -> BulkRun:
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "requests_per_minute": args.requests_per_minute,
        "idempotency_keys": key_for,
        "on_progress": on_progress,
        "wait": args.wait,
        "poll_interval": args.poll_interval,
        "max_poll_interval": None
        if args.max_poll_interval is None
        else max(args.max_poll_interval, args.poll_interval),
        "wait_timeout": args.timeout,
    }
    if args.start is not None:
        return client.sync.request_sync_for_date_range_many(
            todo, start=args.start, finish=args.finish, **options
        )
    return client.sync.request_sync_many(todo, sync_to=args.sync_to, **options)
