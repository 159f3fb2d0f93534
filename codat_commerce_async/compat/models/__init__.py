"""``models.operations`` and ``models.shared``, as in the original SDK."""

from . import operations, shared

__all__ = ["operations", "shared"]
