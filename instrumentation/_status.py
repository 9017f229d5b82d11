"""The status taxonomy: from an exception, or from what a span says about one, to a status.

Provider SDKs are recognised by class name and HTTP status code, never by ``isinstance``:
the current ``openai`` and ``anthropic`` SDKs are built on ``httpx2`` while apps may use
``httpx``, ``requests`` or ``aiohttp``, and importing any of them here would make
``import llmlens`` heavy. The collector uses the same functions on ``error.type``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Final

OK: Final = "ok"
INVALID_OUTPUT: Final = "invalid_output"
TIMEOUT: Final = "timeout"
RATE_LIMITED: Final = "rate_limited"
PROVIDER_ERROR: Final = "provider_error"
CLIENT_ERROR: Final = "client_error"
CANCELLED: Final = "cancelled"
ERROR: Final = "error"

# Class names as the SDKs and HTTP libraries spell them. Matched on the bare class name of
# the exception and of every base class, so subclasses (e.g. openai.APITimeoutError) map too.
_NAME_TO_STATUS: Final[dict[str, str]] = {
    "RateLimitError": RATE_LIMITED,
    "TooManyRequests": RATE_LIMITED,
    "ResourceExhausted": RATE_LIMITED,
    "InternalServerError": PROVIDER_ERROR,
    "OverloadedError": PROVIDER_ERROR,
    "ServiceUnavailableError": PROVIDER_ERROR,
    "ServiceUnavailable": PROVIDER_ERROR,
    "APIConnectionError": PROVIDER_ERROR,
    "ConnectError": PROVIDER_ERROR,
    "RemoteProtocolError": PROVIDER_ERROR,
    "BadGatewayError": PROVIDER_ERROR,
    "APITimeoutError": TIMEOUT,
    "TimeoutError": TIMEOUT,
    "TimeoutException": TIMEOUT,
    "ReadTimeout": TIMEOUT,
    "ConnectTimeout": TIMEOUT,
    "WriteTimeout": TIMEOUT,
    "PoolTimeout": TIMEOUT,
    "Timeout": TIMEOUT,
    "DeadlineExceeded": TIMEOUT,
    "CancelledError": CANCELLED,
    "KeyboardInterrupt": CANCELLED,
    "GeneratorExit": CANCELLED,
    "InvalidOutput": INVALID_OUTPUT,
    # instructor gives up: the model's answers never validated against response_model.
    "InstructorRetryException": INVALID_OUTPUT,
    "BadRequestError": CLIENT_ERROR,
    "AuthenticationError": CLIENT_ERROR,
    "PermissionDeniedError": CLIENT_ERROR,
    "NotFoundError": CLIENT_ERROR,
    "ConflictError": CLIENT_ERROR,
    "UnprocessableEntityError": CLIENT_ERROR,
    "ContextWindowExceededError": CLIENT_ERROR,
    "RequestTooLargeError": CLIENT_ERROR,
}

# "<class 'openai.RateLimitError'>" or "openai.RateLimitError" -> "RateLimitError"
_CLASS_REPR: Final = re.compile(r"^<class '([\w.]+)'>$")


def short_error_type(error_type: str | None) -> str | None:
    """Reduce an ``error.type`` value to a bare, stable class name.

    >>> short_error_type("<class 'openai.RateLimitError'>")
    'RateLimitError'
    """
    if not error_type:
        return None
    text = error_type.strip()
    match = _CLASS_REPR.match(text)
    if match:
        text = match.group(1)
    if "." in text and " " not in text:
        text = text.rsplit(".", 1)[1]
    return text[:120] or None


def status_from_http(code: int | None) -> str | None:
    """Map an HTTP status code to a status, or None when the code says nothing."""
    if code is None:
        return None
    if code == 429:
        return RATE_LIMITED
    if code == 408:
        return TIMEOUT
    if code == 499:
        return CANCELLED
    if code >= 500:
        # 529 is Anthropic's "overloaded"; all 5xx are the provider's fault.
        return PROVIDER_ERROR
    if code >= 400:
        return CLIENT_ERROR
    return None


def status_from_error_type(error_type: str | None, http_status: int | None = None) -> str:
    """Status of a failed span from its ``error.type`` and HTTP status (either may be missing)."""
    by_code = status_from_http(http_status)
    if by_code is not None:
        return by_code
    short = short_error_type(error_type)
    if short is None:
        return ERROR
    if short.isdigit():  # the conventions allow the HTTP status code as error.type
        return status_from_http(int(short)) or ERROR
    if short in _NAME_TO_STATUS:
        return _NAME_TO_STATUS[short]
    lowered = short.lower()
    if "timeout" in lowered:
        return TIMEOUT
    if "ratelimit" in lowered or "rate_limit" in lowered:
        return RATE_LIMITED
    if "overloaded" in lowered:
        return PROVIDER_ERROR
    return ERROR


def http_status_of(exc: BaseException) -> int | None:
    """The HTTP status code an SDK exception carries, without importing the SDK."""
    for attr in ("status_code", "status", "http_status", "code"):
        value = _attribute(exc, attr)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    value = _attribute(_attribute(exc, "response"), "status_code")
    if isinstance(value, int):
        return value
    return None


def _attribute(obj: object, name: str) -> object:
    # An exception's properties are foreign code: one that raises (even SystemExit) means
    # "not there", so the status still comes from the class name.
    try:
        return getattr(obj, name, None)
    except BaseException:
        return None


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """Return ``(status, failure_reason)`` for an exception.

    The failure reason is the exception's class name: stable, groupable and free of any
    user content (exception messages may quote prompts, so they are never used).
    """
    name = type(exc).__name__
    if isinstance(exc, asyncio.CancelledError):
        return CANCELLED, name
    if isinstance(exc, TimeoutError):
        return TIMEOUT, name
    status = status_from_http(http_status_of(exc))
    if status is None:
        for klass in type(exc).__mro__:
            mapped = _NAME_TO_STATUS.get(klass.__name__)
            if mapped is not None:
                status = mapped
                break
    if status is None:
        status = status_from_error_type(name)
    return status, name
