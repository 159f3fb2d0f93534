"""Codat's ``ErrorMessage`` body. Every field is optional: real bodies omit many."""

from __future__ import annotations

from ._base import CodatModel

__all__ = ["ErrorMessage", "ErrorValidation", "ErrorValidationItem"]


class ErrorValidationItem(CodatModel):
    """One validation finding."""

    item_id: str | None = None
    message: str | None = None
    validator_name: str | None = None


class ErrorValidation(CodatModel):
    """Validation errors and warnings that explain a 400."""

    errors: list[ErrorValidationItem] | None = None
    warnings: list[ErrorValidationItem] | None = None


class ErrorMessage(CodatModel):
    """The JSON body Codat sends with an error status."""

    status_code: int | None = None
    """The HTTP status, as Codat reports it."""
    service: str | None = None
    """The Codat service that raised the error."""
    error: str | None = None
    """A short description."""
    correlation_id: str | None = None
    """The id to quote to Codat support."""
    validation: ErrorValidation | None = None
    can_be_retried: str | None = None
    """Codat's hint as a string: ``"True"``, ``"False"`` or ``"Unknown"``."""
    detailed_error_code: int | None = None
