"""The exceptions llmlens raises into application code.

llmlens raises very little: instrumentation errors are logged and swallowed, and the
exceptions of the wrapped call pass through unchanged. What remains is the outcome the
caller asked for with ``observe(output=...)``::

    Exception
    └── LLMLensError                 root: ``except llmlens.LLMLensError`` catches all of ours
        └── InvalidOutput            the model's output failed ``output=`` validation
                                     (.failure_reason, .validation_error, .attempts)

Invalid arguments to :func:`llmlens.configure`, :func:`llmlens.observe` or
:class:`llmlens.RetryPolicy` raise the built-in ``ValueError`` / ``TypeError`` at
definition time, never during a call.
"""

from __future__ import annotations

__all__ = ["InvalidOutput", "LLMLensError"]


class LLMLensError(Exception):
    """Root of every exception llmlens raises itself."""


class InvalidOutput(LLMLensError):
    """The model answered, but the answer failed validation against ``observe(output=...)``.

    ``failure_reason`` is the stable, value-free reason that is also recorded on the span
    (``"priority: input should be 'low', 'medium' or 'high'"``); ``validation_error`` is the
    original error (for pydantic, a ``ValidationError``), which may quote the model's output
    and is therefore never recorded. It is also chained as ``__cause__``.

    >>> try:
    ...     extract("...")  # doctest: +SKIP
    ... except llmlens.InvalidOutput as exc:
    ...     log.warning("bad ticket: %s", exc.failure_reason)
    """

    def __init__(self, failure_reason: str, validation_error: BaseException | None = None, *,
                 attempts: int = 1) -> None:
        super().__init__(failure_reason)
        self.failure_reason = failure_reason
        self.validation_error = validation_error
        self.attempts = attempts
