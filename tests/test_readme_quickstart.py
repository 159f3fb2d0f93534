"""The README's two quickstarts run as printed against the fake Codat on a loopback port,
on httpx and on httpx2 chosen with the documented switch (``CODAT_HTTP_LIBRARY``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codat_commerce_async.testing import FakeCodat, FakeCodatServer

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {title}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no code block under {title!r}"
    return match.group(1)


@pytest.mark.parametrize("library", ["httpx", "httpx2"])
@pytest.mark.parametrize(
    ("title", "triggers"), [("Quickstart (async)", 2), ("Quickstart (blocking)", 1)]
)
def test_quickstart_runs_as_printed(library: str, title: str, triggers: int) -> None:
    code = quickstart(title)
    assert 'api_key="YOUR_API_KEY"' in code  # the fake is told to accept exactly that
    fake = FakeCodat(api_key="YOUR_API_KEY")
    with FakeCodatServer(fake) as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CODAT_")},
            "CODAT_BASE_URL": server.base_url,
            "CODAT_HTTP_LIBRARY": library,
        }
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == triggers and all(r.status == 200 for r in posts)
    assert all(f" {library}/" in (r.header("user-agent") or "") for r in posts)
