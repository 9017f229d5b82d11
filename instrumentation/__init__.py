"""llmlens: make LLM calls in production observable and affordable.

One decorator, :func:`observe`, wraps a call to a model in an OpenTelemetry span that
follows the GenAI semantic conventions, and owns the production habits around it:
bounded retries with jitter, timeouts, validation of structured output, and privacy.
:func:`configure` decides where the spans go (an embedded SQLite store by default).

Importing llmlens is cheap: the store, the collector service and the dashboard are
imported only when used.
"""

from __future__ import annotations

from llmlens._config import Settings, configure, flush, get_settings, shutdown
from llmlens._exceptions import InvalidOutput, LLMLensError
from llmlens._observe import current_output, observe, propagate, record_usage
from llmlens._pipeline import dropped
from llmlens._retry import RetryPolicy

__all__ = [
    "InvalidOutput",
    "LLMLensError",
    "RetryPolicy",
    "Settings",
    "configure",
    "current_output",
    "dropped",
    "flush",
    "get_settings",
    "observe",
    "propagate",
    "record_usage",
    "shutdown",
]
