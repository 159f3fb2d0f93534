"""codat-commerce-async: the async-first Python SDK for Codat's Sync for Commerce sync API.

::

    from codat_commerce_async import AsyncSyncClient

    async with AsyncSyncClient(api_key="...") as client:
        summary = await client.sync.request_sync(company_id)

``SyncClient`` offers the same methods for blocking code.
"""

from ._blocking import SyncClient
from ._bulk import BlockingBulkRun, BulkProgress, BulkResult, BulkRun
from ._client import AsyncSyncClient
from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_BASE_URL,
    DEFAULT_DEADLINE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    RetryPolicy,
)
from ._events import CallEvent
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    APITLSError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    CodatError,
    ConfigurationError,
    ConflictError,
    DailyQuotaExhaustedError,
    InternalServerError,
    LimitsUnavailableError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
    RetryPolicyError,
    SyncWaitTimeoutError,
    UnexpectedRedirectError,
    UnprocessableEntityError,
    WebhookError,
    WebhookVerificationError,
)
from ._models import (
    CompanySyncStatus,
    Connection,
    DataConnectionError,
    ErrorMessage,
    ErrorValidation,
    ErrorValidationItem,
    SyncDateRange,
    SyncState,
    SyncStatus,
    SyncSummary,
)
from ._redis_limits import RedisLimits
from ._response import APIResponse
from ._retry import RetryBudget, is_retryable, may_resend_with_new_key
from ._strategies import stop_codat, wait_codat
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponse",
    "APIStatusError",
    "APITLSError",
    "APITimeoutError",
    "AsyncSyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BlockingBulkRun",
    "BulkProgress",
    "BulkResult",
    "BulkRun",
    "CallEvent",
    "ClientClosedError",
    "Clock",
    "CodatError",
    "CompanySyncStatus",
    "ConfigurationError",
    "ConflictError",
    "Connection",
    "DailyQuotaExhaustedError",
    "DataConnectionError",
    "ErrorMessage",
    "ErrorValidation",
    "ErrorValidationItem",
    "InternalServerError",
    "LimitsUnavailableError",
    "NotFoundError",
    "NotGiven",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedisLimits",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "RetryPolicyError",
    "SyncClient",
    "SyncDateRange",
    "SyncState",
    "SyncStatus",
    "SyncSummary",
    "SyncWaitTimeoutError",
    "SystemClock",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "WebhookError",
    "WebhookVerificationError",
    "__version__",
    "is_retryable",
    "may_resend_with_new_key",
    "stop_codat",
    "wait_codat",
]
