#!/usr/bin/env python3
"""Build the sdist and wheel, check what is inside, install the wheel into a fresh virtual
environment and use it from outside the source tree.

    python scripts/check_dist.py                 # needs `build` (the dev extra)
    python scripts/check_dist.py --no-isolation  # offline: build with the installed hatchling
    python scripts/check_dist.py --keep DIR      # leave the artefacts in DIR

Exit status 0 when every check passes; each failure is printed.
"""

from __future__ import annotations

import argparse
import email
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "codat_commerce_async"

WHEEL_MUST_HAVE = [
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/py.typed",
    f"{PACKAGE}/_version.py",
    f"{PACKAGE}/compat/__init__.py",
    f"{PACKAGE}/compat/models/shared.py",
    f"{PACKAGE}/contrib/otel.py",
    f"{PACKAGE}/testing/__init__.py",
]
SDIST_MUST_HAVE = [
    "pyproject.toml",
    "README.md",
    "CHANGELOG.md",
    f"{PACKAGE}/py.typed",
    "tests/conftest.py",
    "examples/fastapi_app.py",
    "docs/index.md",
    "mkdocs.yml",
]
EXTRAS = {"otel", "docs", "test", "dev", "cli", "aiohttp", "fake-server"}

# Runs inside the fresh environment, from a directory outside the source tree.
SMOKE = textwrap.dedent(
    """
    import importlib.resources, pathlib, sys
    import httpx
    import codat_commerce_async as sdk
    from codat_commerce_async.compat import CodatSyncCommerce

    root = pathlib.Path(sys.argv[1])
    where = pathlib.Path(sdk.__file__).resolve()
    assert root not in where.parents, f"imported from the source tree: {where}"
    assert importlib.resources.files("codat_commerce_async").joinpath("py.typed").is_file()
    assert sdk.__version__ == sys.argv[2], (sdk.__version__, sys.argv[2])

    company = "8a210b68-6988-11ed-a1eb-0242ac120002"
    answer = {"companyId": company, "syncStatusCode": 1000, "commerceSyncId": company}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    with sdk.SyncClient(api_key="k", base_url="https://api.codat.io", transport=transport) as c:
        assert c.sync.request_sync(company).is_in_progress
    try:
        import codat_commerce_async.contrib.otel  # noqa: F401
    except ImportError as exc:
        assert "codat-commerce-async[otel]" in str(exc), exc
    else:
        raise AssertionError("contrib.otel imported without opentelemetry-api installed")
    print(f"ok: codat-commerce-async {sdk.__version__} from {where.parent}")
    """
)


def run(*args: str | Path, cwd: Path | None = None) -> str:
    print("+", " ".join(str(a) for a in args), flush=True)
    done = subprocess.run(  # noqa: S603 - fixed commands, our own interpreter
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        raise SystemExit(f"command failed with status {done.returncode}")
    return done.stdout


def source_version() -> str:
    text = (ROOT / PACKAGE / "_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if match is None:
        raise SystemExit("no __version__ in _version.py")
    return match.group(1)


def check_wheel(wheel: Path, version: str, problems: list[str]) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_string(archive.read(metadata_name).decode())
    problems += [f"wheel lacks {name}" for name in WHEEL_MUST_HAVE if name not in names]
    problems += [f"wheel holds {n}" for n in names if n.startswith(("tests/", "examples/"))]
    if metadata["Version"] != version:
        problems.append(f"wheel version {metadata['Version']} != {version}")
    if not metadata["Requires-Python"]:
        problems.append("no Requires-Python")
    missing = EXTRAS - set(metadata.get_all("Provides-Extra") or [])
    if missing:
        problems.append(f"extras missing from the metadata: {sorted(missing)}")
    if not metadata.get_all("Project-URL"):
        problems.append("no Project-URL")
    if not any("Typing :: Typed" in c for c in metadata.get_all("Classifier") or []):
        problems.append("no 'Typing :: Typed' classifier")
    if f"{version}" not in wheel.name:
        problems.append(f"wheel file name {wheel.name} lacks the version")


def check_sdist(sdist: Path, version: str, problems: list[str]) -> None:
    prefix = f"codat_commerce_async-{version}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    problems += [f"sdist lacks {name}" for name in SDIST_MUST_HAVE if name not in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-isolation", action="store_true", help="pass to python -m build")
    parser.add_argument("--keep", type=Path, help="build into this directory and keep it")
    args = parser.parse_args()
    version = source_version()
    with tempfile.TemporaryDirectory(prefix="check-dist-") as scratch:
        work = args.keep.resolve() if args.keep else Path(scratch)
        dist = work / "dist"
        # No --sdist/--wheel: build the sdist, then the wheel from it (proves the sdist whole).
        build = [sys.executable, "-m", "build", "--outdir", dist]
        if args.no_isolation:
            build.append("--no-isolation")
        run(*build, ROOT)
        wheels = sorted(dist.glob("*.whl"))
        sdists = sorted(dist.glob("*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            raise SystemExit(f"expected one wheel and one sdist in {dist}")
        problems: list[str] = []
        check_wheel(wheels[0], version, problems)
        check_sdist(sdists[0], version, problems)

        env_dir = work / "fresh-venv"
        venv.EnvBuilder(clear=True, with_pip=True).create(env_dir)
        python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        run(python, "-m", "pip", "install", "--quiet", wheels[0])
        outside = work / "elsewhere"
        outside.mkdir(exist_ok=True)
        smoke = outside / "smoke.py"
        smoke.write_text(SMOKE)
        print(run(python, smoke, ROOT, version, cwd=outside), end="")

        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        if problems:
            return 1
    print(f"dist check passed: {wheels[0].name}, {sdists[0].name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
