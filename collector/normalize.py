"""The one function from an OpenTelemetry span to a row: :func:`normalize`.

Both the in-process exporter and the OTLP receiver call it (through
:mod:`llmlens.collector.ingest`), so a span means the same thing whichever door it came
in by. Where each instrumentation writes each fact is in :mod:`._sources`; this module
only reads that table, applies the token semantics of the conventions, maps status and
keeps the remaining attributes (minus prompt and answer content) as JSON.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from llmlens import _status
from llmlens import semconv as sc
from llmlens._finish import finish_reason
from llmlens.collector import _sources as src
from llmlens.collector.record import STATUS_ERROR, SpanRecord

if TYPE_CHECKING:  # the store imports SQLAlchemy; normalize stays free of it
    from llmlens.collector.store import SpanRow

_F = src.FIELDS
_CONSUMED = src.CONSUMED
# attribute name -> (field, preference): one pass over a span's attributes finds every
# field, instead of probing each of ~80 candidate names per span.
_INDEX: dict[str, tuple[str, int]] = {}
for _field, _names in _F.items():
    for _rank, _name in enumerate(_names):
        _INDEX.setdefault(_name, (_field, _rank))
_CONTENT_KEYS = src.CONTENT_KEYS
_CONTENT_PREFIXES = src.CONTENT_PREFIXES
_JSON_FIELDS = src.JSON_FIELDS
_HTTP_CODE_IN_MESSAGE = re.compile(src.HTTP_CODE_IN_MESSAGE)
_NAMING_KINDS = src.NAMING_KINDS

Redactor = Callable[[str, int], str]


def _first(attrs: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any, limit: int = 255) -> str | None:
    if value is None:
        return None
    if type(value) is str:
        return value[:limit] or None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
        if value is None:
            return None
    text = str(value)
    return text[:limit] if text else None


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def is_llm_span(attrs: Mapping[str, Any], scope_name: str = "") -> bool:
    """Whether a span is one request to a model provider (and so a row)."""
    role = attrs.get(sc.SPAN_ROLE)
    if role is not None:
        # llmlens' own spans: a captured request is a row; an attempt only when no request
        # was captured inside it (its requests are the rows then); a call never.
        if role == sc.ROLE_REQUEST:
            return True
        return role == sc.ROLE_ATTEMPT and not attrs.get(sc.REQUESTS)
    if attrs.get(sc.MERGED_INTO):
        return False
    kind = attrs.get(src.OPENINFERENCE_KIND)
    if kind is not None:
        return str(kind).upper() in src.OPENINFERENCE_REQUEST_KINDS
    kind = attrs.get(src.TRACELOOP_KIND)
    if kind is not None and str(kind).lower() in src.TRACELOOP_STRUCTURE_KINDS:
        return False
    kind = attrs.get(src.LANGFUSE_TYPE)
    if kind is not None:
        return str(kind).lower() in src.LANGFUSE_REQUEST_TYPES
    operation = _first(attrs, _F["operation"])
    if operation is not None and str(operation).lower() not in src.REQUEST_OPERATIONS:
        return False
    if operation is not None or scope_name in src.SCOPE_PROVIDERS:
        return True
    # No operation name and no provider scope: a request only if it reports usage. An app
    # span that merely names a model (a setting, a log field) is not a request to it.
    return _first(attrs, _F["input_tokens"]) is not None or _first(attrs, _F["output_tokens"]) is not None


def span_name_for_task(record: SpanRecord) -> str | None:
    """The task a span names for the requests beneath it, or None.

    A task attribute (``llmlens.task``, a workflow, agent or trace name), else the span
    name of a chain, agent or workflow span (``_sources.NAMING_KINDS``).
    """
    attrs = record.attributes
    for name in _F["task"]:
        value = attrs.get(name)
        if value is not None:
            return _str(value)
    for attribute, kinds in _NAMING_KINDS.items():
        kind = attrs.get(attribute)
        if kind is not None and str(kind) in kinds:
            return _str(attrs.get(src.TRACELOOP_ENTITY_NAME)) or _str(record.name)
    return None


def _provider(value: Any, scope_name: str, model: str | None) -> str | None:
    if value is not None:
        text = str(value).lower()
        return src.PROVIDER_ALIASES.get(text, text)[:64]
    if scope_name in src.SCOPE_PROVIDERS:
        return src.SCOPE_PROVIDERS[scope_name]
    if model:
        lowered = model.lower()
        for prefix, provider in src.MODEL_PREFIX_PROVIDERS:
            if lowered.startswith(prefix):
                return provider
    return None


def _status_of(record: SpanRecord, attrs: Mapping[str, Any],
               http_status: int | None) -> tuple[str, str | None, str | None]:
    """(status, failure_reason, error_type) from llmlens' own status, else the span's."""
    error_type = _status.short_error_type(_str(attrs.get(sc.ERROR_TYPE)))
    messages = [record.status_message] if record.status_message else []
    if record.status_code == STATUS_ERROR:
        for name, event_attrs in record.events:
            if name == "exception":
                if error_type is None:
                    error_type = _status.short_error_type(_str(event_attrs.get("exception.type")))
                message = event_attrs.get("exception.message")
                if isinstance(message, str):
                    messages.append(message)
                break
    status = attrs.get(sc.STATUS)
    if status is not None:
        status = str(status)
        if status not in sc.STATUSES:
            status = _status.ERROR
        reason = _str(attrs.get(sc.FAILURE_REASON))
        return status, reason if status != _status.OK else None, error_type
    if record.status_code != STATUS_ERROR and error_type is None:
        return _status.OK, None, None
    if http_status is None or http_status < 400:
        # Sources that keep only the message still tell the code: "Error code: 429 - ...".
        for message in messages:
            match = _HTTP_CODE_IN_MESSAGE.search(message[:500])
            if match:
                http_status = int(match.group(1))
                break
    status = _status.status_from_error_type(error_type, http_status)
    return status, error_type or "error", error_type


def _seconds_after(moment: Any, start_unix_nano: int) -> float | None:
    """Seconds from a span's start to an ISO 8601 time (optionally JSON-quoted), if after it."""
    try:
        text = json.loads(moment) if isinstance(moment, str) and moment.startswith('"') else moment
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - start_unix_nano / 1e9
    return seconds if seconds >= 0 else None


def _fill_from_json(found: dict[str, Any], raw: Any, fields: Mapping[str, tuple[str, ...]]) -> None:
    """Fill fields no plain attribute gave from one JSON-encoded attribute (``_sources.JSON_FIELDS``)."""
    try:
        document = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        try:  # LiteLLM writes a Python dict's repr; literal_eval reads literals only
            document = ast.literal_eval(raw) if len(raw) < 65536 else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return
    for name, keys in fields.items():
        if name in found:
            continue
        for key in keys:
            value: Any = document
            for part in key.split(".") if key else ():
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and not isinstance(value, (dict, list)):
                found[name] = value
                break


def _content_value(value: Any, redact: Redactor | None, max_chars: int) -> Any:
    if redact is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return redact(text, max_chars)


def normalize(
    record: SpanRecord,
    *,
    capture_content: bool = False,
    redact: Redactor | None = None,
    max_content_chars: int = 4096,
) -> SpanRow | None:
    """Turn one span into an ``llm_spans`` row (without cost), or None if it is not an LLM call.

    Content attributes (prompts, answers, tool arguments) are dropped unless
    ``capture_content`` is true, and then passed through ``redact``.
    """
    attrs = record.attributes
    if not is_llm_span(attrs, record.scope_name):
        return None
    found: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    kept: dict[str, Any] = {}
    index = _INDEX
    for key, value in attrs.items():
        slot = index.get(key)
        if slot is not None:
            if value is None:  # an empty OTLP AnyValue says nothing: let another name speak
                continue
            name, rank = slot
            if name not in ranks or rank < ranks[name]:
                ranks[name] = rank
                found[name] = value
            continue
        if key in _CONSUMED:
            continue
        if key in _CONTENT_KEYS or key.startswith(_CONTENT_PREFIXES):
            if capture_content:
                kept[key] = _content_value(value, redact, max_content_chars)
            continue
        kept[key] = value  # tuples (OTel sequences) encode as JSON arrays as they are

    for json_name, json_fields in _JSON_FIELDS.items():
        raw = attrs.get(json_name)
        if raw is not None:
            _fill_from_json(found, raw, json_fields)

    get = found.get
    response_model = _str(get("response_model"))
    # Charts and filters group by the requested model; a span that only knows the
    # model that answered (a response read without the request) is grouped by that.
    request_model = _str(get("request_model")) or response_model
    input_tokens = _int(get("input_tokens"))
    output_tokens = _int(get("output_tokens"))
    cache_read = _int(get("cache_read_tokens"))
    cache_write = _int(get("cache_write_tokens"))
    if input_tokens is not None and (cache_read or 0) + (cache_write or 0) > input_tokens:
        # The sender reported cache tokens on top of input (Anthropic's own shape): the
        # conventions count them inside input, so fold them in.
        input_tokens += (cache_read or 0) + (cache_write or 0)
    if output_tokens is None and input_tokens is not None:
        total = _int(get("total_tokens"))
        if total is not None and total >= input_tokens:
            output_tokens = total - input_tokens
    status, failure_reason, error_type = _status_of(record, attrs, _int(get("http_status")))
    resource = record.resource_attributes
    service_name = _str(resource.get(sc.SERVICE_NAME)) if resource else None
    duration_ms = max(record.end_time_unix_nano - record.start_time_unix_nano, 0) / 1e6
    ttft = _float(get("ttft_s"))
    if ttft is None and src.LANGFUSE_COMPLETION_START in attrs:
        ttft = _seconds_after(attrs[src.LANGFUSE_COMPLETION_START], record.start_time_unix_nano)
    if ttft is None and record.first_chunk_unix_nano:
        ttft = max(record.first_chunk_unix_nano - record.start_time_unix_nano, 0) / 1e9
    streaming_value = get("streaming")
    if ttft is not None and streaming_value is not None and not _bool(streaming_value):
        # A source that says the answer was not streamed has no first chunk to time:
        # OpenLIT writes the whole response time as its time to first token then.
        ttft = None
    call_duration = _float(attrs.get(sc.CALL_DURATION_MS))
    final = _bool(attrs.get(sc.FINAL, True))
    if record.scope_name and record.scope_name != sc.SCOPE_NAME:
        kept["otel.scope.name"] = record.scope_name
    if capture_content and record.status_message and status != _status.OK:
        # Exception messages can quote user input, so they are content.
        kept["otel.status_description"] = _content_value(record.status_message, redact, max_content_chars)

    return {
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "parent_span_id": record.parent_span_id,
        "service_name": service_name,
        "name": record.name[:255],
        "start_time": datetime.fromtimestamp(record.start_time_unix_nano / 1e9, tz=UTC),
        "duration_ms": duration_ms,
        "time_to_first_token_ms": ttft * 1000.0 if ttft is not None else None,
        # None unless the span names it: the ingest path then takes the nearest named
        # ancestor's (a workflow, chain, agent or trace name), even from another batch.
        "task": _str(get("task")),
        "operation": _str(get("operation"), 64),
        "provider": _provider(get("provider"), record.scope_name, request_model or response_model),
        "request_model": request_model,
        "response_model": response_model,
        "prompt_name": _str(get("prompt_name")),
        "prompt_version": _str(get("prompt_version")),
        "status": status,
        "failure_reason": failure_reason,
        "error_type": error_type,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": _int(get("reasoning_tokens")),
        "cost_usd": None,
        "reported_cost_usd": _float(get("reported_cost")),
        "call_id": _str(attrs.get(sc.CALL_ID), 16) or record.span_id,
        "attempt": _int(attrs.get(sc.ATTEMPT)) or 1,
        "max_attempts": _int(attrs.get(sc.MAX_ATTEMPTS)),
        "final": final,
        # The logical call's duration rides on its final attempt only (DESIGN.md).
        "call_duration_ms": call_duration if call_duration is not None else (duration_ms if final else None),
        "idempotency_key": _str(attrs.get(sc.IDEMPOTENCY_KEY)),
        "streaming": _bool(streaming_value) if streaming_value is not None else ttft is not None,
        "finish_reason": finish_reason(_str(get("finish_reasons"), 64)),
        "conversation_id": _str(get("conversation_id")),
        "prompt_hash": _str(attrs.get(sc.PROMPT_HASH), 64),
        "attributes": kept,
    }
