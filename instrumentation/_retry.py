"""``RetryPolicy``: which failed attempts of an observed call are tried again, and when.

A small frozen value object in the style of ``httpx.Timeout``: the decorator reads it,
never mutates it, and one policy can be shared by many functions. Backoff is exponential
with *full jitter* (a uniformly random delay between 0 and the exponential cap), which
spreads retries of many clients hit by the same outage instead of synchronising them;
a ``Retry-After`` (or ``retry-after-ms``) the provider sent is a floor under that delay.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from llmlens import _status

__all__ = ["RetryPolicy", "retry_after_seconds"]

DEFAULT_RETRY_ON: Final = frozenset({_status.TIMEOUT, _status.RATE_LIMITED, _status.PROVIDER_ERROR})
_KNOWN: Final = frozenset(
    {_status.INVALID_OUTPUT, _status.TIMEOUT, _status.RATE_LIMITED, _status.PROVIDER_ERROR,
     _status.CLIENT_ERROR, _status.ERROR}
)


@dataclass(frozen=True)
class RetryPolicy:
    """How an observed call retries.

    ``max_retries`` is the cap: at most ``1 + max_retries`` attempts. ``retry_on`` lists the
    statuses that are retried (default ``timeout``, ``rate_limited``, ``provider_error``;
    add ``invalid_output`` to ask the model again when its output fails validation;
    ``cancelled`` is never retried). The delay before retry *n* (1-based) is uniform in
    ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``, raised to the provider's
    ``Retry-After`` when it sent one. A ``Retry-After`` longer than ``max_delay`` ends the
    retries: the provider said not to come back that soon, and sleeping for minutes inside
    a request is rarely what the caller wants.

    >>> RetryPolicy(max_retries=2, retry_on={"rate_limited", "invalid_output"})  # doctest: +ELLIPSIS
    RetryPolicy(max_retries=2, ...)

    The provider SDK's own retries run inside each attempt (each retried request is a row
    of that attempt); lower them (``max_retries=0``) when this policy should be the only one.
    """

    max_retries: int = 2
    retry_on: frozenset[str] = field(default=DEFAULT_RETRY_ON)
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError("max_retries must be a non-negative int")
        statuses = frozenset(self.retry_on if not isinstance(self.retry_on, str) else (self.retry_on,))
        unknown = statuses - _KNOWN
        if unknown:
            raise ValueError(f"retry_on has statuses that cannot be retried: {sorted(unknown)}")
        object.__setattr__(self, "retry_on", statuses)
        if self.base_delay < 0 or self.max_delay < 0 or not math.isfinite(self.max_delay):
            raise ValueError("base_delay and max_delay must be finite and non-negative")

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    def should_retry(self, status: str, attempt: int) -> bool:
        """Whether an attempt (1-based) that ended with ``status`` is followed by another."""
        return attempt <= self.max_retries and status in self.retry_on

    def delay(self, retry_number: int, exc: BaseException | None = None,
              rand: Callable[[], float] = random.random) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based); None: do not retry."""
        cap = min(self.max_delay, self.base_delay * (2.0 ** (retry_number - 1)))
        delay = cap * rand() if self.jitter else cap
        if exc is not None:
            after = retry_after_seconds(exc)
            if after is not None:
                if after > self.max_delay:
                    return None
                delay = max(delay, after)
        return delay

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None) -> RetryPolicy | None:
        """``observe(retry=2)`` is short for ``RetryPolicy(max_retries=2)``."""
        if value is None or isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("retry must be a RetryPolicy or an int")
        return cls(max_retries=value)


def _headers_of(exc: BaseException) -> Any:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    return headers


def retry_after_seconds(exc: BaseException, now: float | None = None) -> float | None:
    """The delay an exception's HTTP response asks for, from ``retry-after-ms`` or ``Retry-After``.

    Works on any object with ``.response.headers`` (openai, anthropic, httpx, httpx2, requests)
    or ``.headers``; ``Retry-After`` may be seconds or an HTTP date.
    """
    try:
        headers = _headers_of(exc)
        if headers is None:
            return None
        raw_ms = headers.get("retry-after-ms")
        if raw_ms is not None:
            value = float(raw_ms) / 1000.0
            return value if math.isfinite(value) and value >= 0 else None
        raw = headers.get("retry-after")
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(str(raw))
            value = parsed.timestamp() - (time.time() if now is None else now)
            value = max(value, 0.0)
        return value if math.isfinite(value) and value >= 0 else None
    except Exception:  # a header we cannot read is the same as no header
        return None
