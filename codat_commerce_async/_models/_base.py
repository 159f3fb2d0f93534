"""The base of every response model: snake_case attributes, camelCase on the wire."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CodatModel(BaseModel):
    """Lenient by design: unknown fields are kept (``model_extra``), never rejected,
    so a new field from Codat never breaks a caller."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict[str, object]:
        """The model as Codat's JSON shape (camelCase keys, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)
