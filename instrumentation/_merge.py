"""``ProviderSpanMerger``: one row per provider request when a provider SDK traces itself too.

The ``anthropic`` SDK (2.x) starts its own GenAI span for every API call whenever a tracer
provider is set, and auto-instrumentations (the official OpenAI one, OpenLLMetry, ...) do
the same. Inside ``@observe`` such a span describes the very request the llmlens attempt
span already describes, so counting both would double tokens and cost.

This processor, installed by :func:`llmlens.configure` in front of the exporters, merges
them: when a span starts as a direct child of a recording llmlens ``attempt`` span and
comes from a known provider instrumentation (or carries ``gen_ai.*`` attributes at start),
it is marked ``llmlens.merged_into = <attempt span id>`` (the normalizer then skips it as
a row); when it ends, the facts the attempt lacks (tokens, models, response id, finish
reasons, provider, server address, time to first chunk) are copied onto the attempt,
which is still open because the provider call ran inside it. What the attempt already
knows wins: llmlens read the same response.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from llmlens import semconv as sc

__all__ = ["ProviderSpanMerger"]

logger = logging.getLogger("llmlens")

PROVIDER_SCOPES: Final = frozenset({
    "com.anthropic.sdk.python",
    "opentelemetry.instrumentation.openai_v2",
    "opentelemetry.instrumentation.openai",
    "opentelemetry.instrumentation.anthropic",
    "opentelemetry.instrumentation.google_genai",
    "opentelemetry.instrumentation.vertexai",
    "opentelemetry.instrumentation.bedrock",
    "opentelemetry.util.genai",
    "openinference.instrumentation.openai",
    "openinference.instrumentation.anthropic",
})

# Facts worth copying onto the attempt, by the name the attempt uses; then older or
# third-party names that mean the same.
_COPY: Final = (
    sc.USAGE_INPUT_TOKENS, sc.USAGE_OUTPUT_TOKENS, sc.USAGE_CACHE_READ_INPUT_TOKENS,
    sc.USAGE_CACHE_WRITE_INPUT_TOKENS, sc.USAGE_REASONING_OUTPUT_TOKENS, sc.REQUEST_MODEL,
    sc.RESPONSE_MODEL, sc.RESPONSE_ID, sc.RESPONSE_FINISH_REASONS, sc.PROVIDER_NAME, sc.SERVER_ADDRESS,
    sc.RESPONSE_TIME_TO_FIRST_CHUNK, sc.CONVERSATION_ID, sc.REQUEST_MAX_TOKENS, sc.REQUEST_TEMPERATURE,
)
_ALIASES: Final = (
    ("gen_ai.system", sc.PROVIDER_NAME),
    ("gen_ai.usage.prompt_tokens", sc.USAGE_INPUT_TOKENS),
    ("gen_ai.usage.completion_tokens", sc.USAGE_OUTPUT_TOKENS),
    ("gen_ai.usage.cache_creation.input_tokens", sc.USAGE_CACHE_WRITE_INPUT_TOKENS),
    ("gen_ai.server.time_to_first_token", sc.RESPONSE_TIME_TO_FIRST_CHUNK),
)
_MAX_OPEN: Final = 4096


def _is_attempt(span: Any) -> bool:
    scope = getattr(span, "instrumentation_scope", None)
    if scope is None or scope.name != sc.SCOPE_NAME:
        return False
    attributes = getattr(span, "attributes", None)
    return attributes is not None and attributes.get(sc.SPAN_ROLE) == sc.ROLE_ATTEMPT


class ProviderSpanMerger(SpanProcessor):
    """Marks provider-SDK spans under an llmlens attempt as merged and folds their facts in."""

    def __init__(self) -> None:
        self._open: dict[int, Span] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        try:
            scope = span.instrumentation_scope
            if scope is not None and scope.name == sc.SCOPE_NAME:
                return  # our own spans (nested @observe) are rows of their own
            parent_ref = span.parent
            if parent_ref is None:
                return
            parent = trace.get_current_span(parent_context)
            if not _is_attempt(parent) or not parent.is_recording():
                return
            parent_id = parent.get_span_context().span_id
            if parent_id != parent_ref.span_id:
                return  # not a direct child (an explicit parent elsewhere)
            known = scope is not None and scope.name in PROVIDER_SCOPES
            if not known:
                attributes = span.attributes or {}
                known = any(key.startswith("gen_ai.") for key in attributes)
            if not known:
                return
            span.set_attribute(sc.MERGED_INTO, format(parent_id, "016x"))
            with self._lock:
                if len(self._open) >= _MAX_OPEN:
                    # A provider span that never ended must not pin memory forever.
                    self._open.pop(next(iter(self._open)))
                self._open[span.get_span_context().span_id] = parent  # type: ignore[assignment]
        except Exception:
            logger.debug("llmlens: could not inspect a starting span", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or not self._open:
            return
        with self._lock:
            parent = self._open.pop(context.span_id, None)
        if parent is None:
            return
        try:
            if not parent.is_recording():
                return
            have = parent.attributes or {}
            child = span.attributes or {}
            facts: dict[str, Any] = {}
            for key in _COPY:
                if key not in have and key in child:
                    facts[key] = child[key]
            for alias, key in _ALIASES:
                if key not in have and key not in facts and alias in child:
                    facts[key] = child[alias]
            if facts:
                parent.set_attributes(facts)
        except Exception:
            logger.debug("llmlens: could not merge a provider span", exc_info=True)

    def shutdown(self) -> None:
        with self._lock:
            self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
