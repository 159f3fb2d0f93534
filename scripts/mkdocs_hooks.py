"""MkDocs hooks for the documentation site (``hooks:`` in ``mkdocs.yml``).

The docstrings use Sphinx roles (``:class:`X```) that Markdown renders literally as
``:class:<code>X</code>``; drop the role so only the code span remains.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):(?=<code)")


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub("", html)
