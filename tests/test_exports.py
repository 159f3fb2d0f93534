"""The public API is deliberate: this pins it."""

import codat_commerce_async

EXPECTED = {
    "APIConnectionError",
    "APIError",
    "APIResponse",
    "APIStatusError",
    "APITLSError",
    "APITimeoutError",
    "AsyncSyncClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "BlockingBulkRun",
    "BulkProgress",
    "BulkResult",
    "BulkRun",
    "CallEvent",
    "Clock",
    "CodatError",
    "CompanySyncStatus",
    "ConfigurationError",
    "ConflictError",
    "DailyQuotaExhaustedError",
    "LimitsUnavailableError",
    "RedisLimits",
    "Connection",
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_BASE_URL",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DataConnectionError",
    "ErrorMessage",
    "ErrorValidation",
    "ErrorValidationItem",
    "InternalServerError",
    "NOT_GIVEN",
    "NotFoundError",
    "NotGiven",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
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
    "SystemClock",
    "SyncSummary",
    "SyncWaitTimeoutError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "WebhookError",
    "WebhookVerificationError",
    "__version__",
    "is_retryable",
    "may_resend_with_new_key",
    "stop_codat",
    "wait_codat",
}


def test_all_is_pinned() -> None:
    assert set(codat_commerce_async.__all__) == EXPECTED


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in codat_commerce_async.__all__:
        obj = getattr(codat_commerce_async, name)
        if isinstance(obj, type):
            assert obj.__doc__, f"{name} has no docstring"


def test_public_names_are_not_defined_in_public_submodules() -> None:
    # Everything else lives in _private modules.
    for name in codat_commerce_async.__all__:
        obj = getattr(codat_commerce_async, name)
        module = getattr(obj, "__module__", "codat_commerce_async._x")
        if isinstance(obj, type):
            assert module.split(".")[1].startswith("_"), (name, module)


def test_py_typed_is_shipped() -> None:
    from importlib.resources import files

    assert files("codat_commerce_async").joinpath("py.typed").is_file()
