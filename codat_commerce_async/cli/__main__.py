"""``python -m codat_commerce_async.cli``: the same as ``codat-commerce``."""

from ._main import main

raise SystemExit(main())
