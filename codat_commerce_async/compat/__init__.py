"""A drop-in for the original ``codatsynccommerce`` SDK, on top of this SDK's engine.

Change only the imports of code written for the original::

    import codat_commerce_async.compat as codatsynccommerce
    from codat_commerce_async.compat.models import operations, shared
    from codat_commerce_async.compat import utils   # for utils.RetryConfig

Calls run on :class:`~codat_commerce_async.SyncClient`, so they get its timeouts, deadline,
connection pooling and safe retries (one ``Idempotency-Key`` per call). Differences from the
original are listed in ``docs/migration.md``; the main ones: HTTP error statuses return a
response with ``sync_summary=None`` (as before) but connection failures raise
:class:`~codat_commerce_async.APIConnectionError`, bad input raises ``ValueError`` before
anything is sent, and ``raw_response`` is an :class:`httpx.Response`.
"""

from . import models, utils
from ._sdk import SERVERS, CodatSyncCommerce, Sync

__all__ = ["SERVERS", "CodatSyncCommerce", "Sync", "models", "utils"]
