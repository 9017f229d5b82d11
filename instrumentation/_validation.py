"""Validation of a model's output for ``observe(output=...)``, with value-free failure reasons.

A failure reason must group in a dashboard and must never leak the user's data, so it
is built from the *shape* of the error (field path and a schema-derived message) and
never from the offending value: ``priority: input should be 'low', 'medium' or 'high'``,
not ``priority: 'URGENT!!! call bob@example.com' is not valid``.

pydantic is imported lazily, the first time a pydantic error is formatted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

from llmlens._exceptions import InvalidOutput

__all__ = ["INVALID_OUTPUT_ERRORS", "Validator", "failure_reason_of", "make_validator"]

Validator = Callable[[Any], Any]

# What a validator raises to say "this output is invalid": pydantic's ValidationError and
# json's JSONDecodeError are ValueErrors; a missing key or index (KeyError, IndexError), a
# value of the wrong type (TypeError) and a failed ``assert`` are how hand-written
# validators reject an answer. Anything else (ZeroDivisionError, AttributeError,
# NameError, RuntimeError, ...) is a bug in the validator, not a property of the output:
# it is logged, the call returns its result unvalidated, and no provider call is retried
# because of it.
INVALID_OUTPUT_ERRORS: Final = (InvalidOutput, ValueError, TypeError, LookupError, AssertionError)

_FENCE: Final = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_MAX_ERRORS: Final = 3
_MAX_REASON: Final = 300
# Error types whose message is written by application code (validators) and may quote
# the value: the reason carries the type instead.
_USER_MESSAGE_TYPES: Final = frozenset({"value_error", "assertion_error"})
_builtin_types: frozenset[str] | None = None


def _pydantic_builtin_error_types() -> frozenset[str]:
    global _builtin_types
    if _builtin_types is None:
        import typing

        from pydantic_core import core_schema

        _builtin_types = frozenset(typing.get_args(core_schema.ErrorType))
    return _builtin_types


def _loc(loc: tuple[Any, ...]) -> str:
    # List indexes vary from call to call; "items[*].name" groups where "items.3.name" would not.
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += "[*]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_reason(exc: Any) -> str:
    builtin = _pydantic_builtin_error_types()
    parts: list[str] = []
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    for error in errors[:_MAX_ERRORS]:
        kind = str(error.get("type", "error"))
        if kind in _USER_MESSAGE_TYPES or kind not in builtin:
            message = kind.replace("_", " ")
        else:
            message = str(error.get("msg", kind))
            message = message[:1].lower() + message[1:]
        where = _loc(tuple(error.get("loc", ())))
        parts.append(f"{where}: {message}" if where else message)
    if len(errors) > _MAX_ERRORS:
        parts.append(f"(+{len(errors) - _MAX_ERRORS} more)")
    return "; ".join(parts)[:_MAX_REASON]


def failure_reason_of(exc: BaseException) -> str:
    """A stable, value-free reason for a validation error.

    pydantic ``ValidationError``: ``field.path: message`` per error (at most three);
    :class:`~llmlens.InvalidOutput`: its own reason; ``json.JSONDecodeError``:
    ``invalid JSON``; anything else: the exception's class name.
    """
    if isinstance(exc, InvalidOutput):
        return exc.failure_reason
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        try:
            return _pydantic_reason(exc) or "ValidationError"
        except Exception:
            return "ValidationError"
    if isinstance(exc, json.JSONDecodeError):
        return "invalid JSON"
    return type(exc).__name__


def _strip_fence(text: str) -> str:
    # Models often wrap JSON in a Markdown code fence even when told not to.
    if "```" in text:
        match = _FENCE.match(text)
        if match:
            return match.group(1)
    return text


def make_validator(output: Any, text_of: Callable[[Any], str | None]) -> Validator:
    """Turn ``observe(output=...)`` into a function from the call's result to the validated object.

    ``output`` is a pydantic model class (validated from the response's text as JSON, from a
    dict, or accepted when the function already returned an instance) or any callable taking
    the result and returning the validated object, raising to reject it (raise
    :class:`~llmlens.InvalidOutput` to choose the failure reason yourself).
    """
    if isinstance(output, type) and hasattr(output, "model_validate_json"):
        model: Any = output

        def validate_model(result: Any) -> Any:
            if isinstance(result, model):
                return result
            if isinstance(result, dict) and not _looks_like_response(result):
                return model.model_validate(result)
            text = result if isinstance(result, str) else text_of(result)
            if text is None:
                raise InvalidOutput("no text in response")
            return model.model_validate_json(_strip_fence(text))

        return validate_model
    if callable(output):
        return output  # type: ignore[no-any-return]
    raise TypeError("output must be a pydantic model class or a callable")


def _looks_like_response(data: dict[str, Any]) -> bool:
    return "choices" in data or "content" in data or "candidates" in data or "output" in data
