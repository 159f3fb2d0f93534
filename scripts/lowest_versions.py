#!/usr/bin/env python3
"""Print the versions installed for what pyproject.toml declares (the runtime dependencies
and the extras named), and check that each sits at its declared lower bound.

    python scripts/lowest_versions.py test          # in the lowest-versions environment
    python scripts/lowest_versions.py test --report # print only, check nothing

CI installs the package with ``uv pip install --resolution lowest-direct -e '.[test]'`` and
runs this before the test suite: a dependency resolved *above* its declared bound (because
another dependency needs more) means the bound is not the one tested, so it must be raised.
Exit status 0 when every bound is the installed version (or ``--report``).
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: CI runs this on 3.11
    sys.exit("lowest_versions.py needs Python 3.11+ (tomllib)")

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def declared(extras: list[str]) -> list[Requirement]:
    """The runtime dependencies plus those of ``extras`` (self-references followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    found: dict[str, Requirement] = {}
    todo = list(project["dependencies"])
    seen_extras: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop()
        if extra in seen_extras:
            continue
        seen_extras.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if requirement.name == name:
                pending.extend(requirement.extras)
            else:
                todo.append(text)
    for text in todo:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate():
            found.setdefault(requirement.name.lower(), requirement)
    return sorted(found.values(), key=lambda r: r.name.lower())


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds) if bounds else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", help="extras to include (e.g. test)")
    parser.add_argument("--report", action="store_true", help="print only; check nothing")
    args = parser.parse_args()
    above = []
    for requirement in declared(args.extras):
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            print(f"  {requirement.name:<22} {requirement.specifier!s:<14} NOT INSTALLED")
            above.append(requirement.name)
            continue
        bound = lower_bound(requirement)
        at_bound = bound is None or installed == bound or args.report
        mark = "" if at_bound else "  <- above the declared bound"
        print(f"  {requirement.name:<22} {requirement.specifier!s:<14} {installed}{mark}")
        if mark:
            above.append(requirement.name)
    if above and not args.report:
        print(
            f"not at their declared lower bound: {', '.join(above)}. The lowest versions that "
            "resolve and pass are the ones to declare: raise these bounds in pyproject.toml.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
