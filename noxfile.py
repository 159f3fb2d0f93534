"""Developer tasks: ``nox -s tests``, ``nox -s tests_httpx2``, ``nox -s tests_lowest``,
``nox -s lint``, ``nox -s typecheck``."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "tests_httpx2"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (warnings are errors; asyncio and trio)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS)
def tests_httpx2(session: nox.Session) -> None:
    """The whole suite (reliability included) with the SDK on httpx2 instead of httpx."""
    session.install("-e", ".[test,httpx2]")
    session.run("python", "-m", "pytest", "--http-library=httpx2", *session.posargs)


@nox.session(python="3.11")
def tests_lowest(session: nox.Session) -> None:
    """The suite with every declared dependency at its lower bound (uv's lowest-direct), as
    CI runs it; fails if a dependency resolves above its bound (raise the bound then)."""
    session.install("uv")
    python = os.path.join(session.bin, "python")
    session.run(
        "uv", "pip", "install", "--python", python, "--resolution", "lowest-direct",
        "-e", ".[test]",
    )  # fmt: skip
    session.run("python", "scripts/lowest_versions.py", "test")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "codat_commerce_async")
