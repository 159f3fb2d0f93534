"""The pydantic v2 ``SyncSummary`` the raw clients validate with (same JSON as the SDK's)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SyncDateRange(BaseModel):
    start: str
    finish: str


class SyncSummary(BaseModel):
    """``POST /companies/{companyId}/sync/commerce/latest`` answer."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    sync_date_range_utc: SyncDateRange | None = Field(default=None, alias="syncDateRangeUtc")
    company_id: str | None = Field(default=None, alias="companyId")
    commerce_sync_id: str | None = Field(default=None, alias="commerceSyncId")
    sync_status_code: int | None = Field(default=None, alias="syncStatusCode")
    sync_status: str | None = Field(default=None, alias="syncStatus")
    error_message: str | None = Field(default=None, alias="errorMessage")
    sync_exception_message: str | None = Field(default=None, alias="syncExceptionMessage")
    sync_utc: str | None = Field(default=None, alias="syncUtc")
    data_connections: list[dict[str, object]] | None = Field(default=None, alias="dataConnections")
    data_pushed: bool | None = Field(default=None, alias="dataPushed")
