"""Finish reasons: every provider's word for why a model stopped, in the conventions' vocabulary.

OpenAI says ``stop``/``length``/``tool_calls``, Anthropic ``end_turn``/``max_tokens``/
``tool_use``, Gemini ``STOP``/``MAX_TOKENS``/``SAFETY``, the Responses API a status plus
``incomplete_details.reason``. Rows from any of them, read in-process or received over
OTLP, are grouped and filtered together only if they use the same words, so this one
table serves both the capture (``_wire``, ``_usage``) and the collector (``normalize``).

The target words are the GenAI conventions' finish reasons: ``stop``, ``length``,
``content_filter``, ``tool_call``, ``error``. A reason with no equivalent (Anthropic's
``pause_turn``, a new provider's own word) is kept, lowercased and bounded.
"""

from __future__ import annotations

from typing import Final

__all__ = ["finish_reason"]

STOP: Final = "stop"
LENGTH: Final = "length"
CONTENT_FILTER: Final = "content_filter"
TOOL_CALL: Final = "tool_call"
ERROR: Final = "error"

_MAP: Final[dict[str, str]] = {
    # stopped by itself (or at a stop sequence)
    "stop": STOP, "end_turn": STOP, "stop_sequence": STOP, "completed": STOP, "complete": STOP,
    "eos": STOP, "end": STOP,
    # ran out of tokens
    "length": LENGTH, "max_tokens": LENGTH, "max_output_tokens": LENGTH, "model_length": LENGTH,
    "model_context_window_exceeded": LENGTH, "max_tokens_exceeded": LENGTH,
    # asked for a tool
    "tool_calls": TOOL_CALL, "tool_use": TOOL_CALL, "tool_call": TOOL_CALL, "function_call": TOOL_CALL,
    # blocked
    "content_filter": CONTENT_FILTER, "refusal": CONTENT_FILTER, "safety": CONTENT_FILTER,
    "recitation": CONTENT_FILTER, "blocklist": CONTENT_FILTER, "prohibited_content": CONTENT_FILTER,
    "spii": CONTENT_FILTER, "image_safety": CONTENT_FILTER, "language": CONTENT_FILTER,
    # failed
    "error": ERROR, "failed": ERROR, "malformed_function_call": ERROR, "unexpected_tool_call": ERROR,
}


def finish_reason(value: object) -> str | None:
    """The conventions' finish reason for a provider's one (``"end_turn"`` -> ``"stop"``).

    >>> finish_reason("MAX_TOKENS")
    'length'
    """
    if value is None:
        return None
    text = value if type(value) is str else str(getattr(value, "name", value))
    found = _MAP.get(text)
    if found is not None:
        return found
    lowered = text.strip().lower()
    if lowered.startswith("finishreason."):  # str() of an SDK enum member
        lowered = lowered[13:]
    return _MAP.get(lowered, lowered[:64] or None)
