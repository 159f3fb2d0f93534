"""Printing for the command line: human-readable by default, JSON with ``--json``.

rich (the ``cli`` extra) draws tables and progress bars; it is imported only when
something is drawn, and plain text is used when it is missing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["describe", "emit", "error", "note", "progress_bar", "table"]

PROG = "codat-commerce"


def emit(record: Mapping[str, Any], *, as_json: bool, title: str | None = None) -> None:
    """One record on stdout: a JSON object, or a two-column table."""
    if as_json:
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
        return
    rows = [(key, _text(value)) for key, value in record.items()]
    table(rows, title=title)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def table(rows: Sequence[tuple[str, str]], *, title: str | None = None) -> None:
    """Two columns on stdout (a rich table when rich is installed)."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is in the cli extra
        if title:
            print(title)
        width = max((len(key) for key, _ in rows), default=0)
        for key, value in rows:
            print(f"  {key.ljust(width)}  {value}")
        return
    grid = Table(box=box.SIMPLE, show_header=False, title=title, title_justify="left")
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value)
    Console(file=sys.stdout, highlight=False, soft_wrap=True).print(grid)


def note(message: str, *, stream: TextIO | None = None) -> None:
    """A line of commentary on stderr (never mixed into ``--json`` output)."""
    print(message, file=stream or sys.stderr, flush=True)


def error(message: str) -> None:
    """The one-line error format: ``codat-commerce: error: ...``."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"{PROG}: error: {first}", file=sys.stderr, flush=True)


def describe(progress: Any) -> str:
    """A waiting run's state for the progress bar: triggered, waiting, confirmed, failed
    and the expected time left (``progress`` is a :class:`BulkProgress`)."""
    left = progress.expected_seconds_left
    eta = "" if left is None else f" · about {_duration(left)} left"
    return (
        f"triggered {progress.triggered:,} · waiting {progress.waiting:,} · "
        f"confirmed {progress.confirmed:,} · failed {progress.failed:,}{eta}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _no_bar(done: int, failed: int, detail: str = "") -> None:
    """The progress bar's ``update`` when no bar is drawn."""


@contextmanager
def progress_bar(
    description: str, total: int | None, *, enabled: bool
) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr; yields ``update(done, failed, detail)`` (``detail``: a
    line such as :func:`describe` gives, or ""). A no-op when disabled, when stderr is
    not a terminal, or without rich."""
    if not enabled or not sys.stderr.isatty():
        yield _no_bar
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:  # pragma: no cover - rich is in the cli extra
        yield _no_bar
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed: {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as bar:
        task = bar.add_task(description, total=total, failed=0, detail="")

        def update(done: int, failed: int, detail: str = "") -> None:
            if detail:  # a waiting run: its own line says how many failed
                bar.update(task, completed=done, failed=failed, detail=detail)
            else:
                bar.update(task, completed=done, failed=failed)

        yield update
