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
from operator import call, itemgetter
from typing import TYPE_CHECKING, Any, cast

from llmlens import _status
from llmlens import semconv as sc
from llmlens._finish import finish_reason
from llmlens.collector import _sources as src
from llmlens.collector.record import STATUS_ERROR, SpanRecord

if TYPE_CHECKING:  # the store imports SQLAlchemy; normalize stays free of it
    from llmlens.collector.store import SpanRow

_F = src.FIELDS
_CONSUMED = src.CONSUMED
# llmlens' own attributes, each read into its column under its own name. llmlens.final is
# not among them: present but empty, it reads as false, where the others read as absent.
_OWN = (sc.STATUS, sc.FAILURE_REASON, sc.ERROR_TYPE, sc.CALL_ID, sc.ATTEMPT, sc.MAX_ATTEMPTS,
        sc.CALL_DURATION_MS, sc.IDEMPOTENCY_KEY, sc.PROMPT_HASH)
# attribute name -> (field, preference): a span's own names say which fields it has,
# instead of each of ~80 candidate names being probed per span.
_INDEX: dict[str, tuple[str, int]] = {name: (name, 0) for name in _OWN}
for _field, _names in _F.items():
    for _rank, _name in enumerate(_names):
        _INDEX.setdefault(_name, (_field, _rank))
_CONTENT_KEYS = src.CONTENT_KEYS
_CONTENT_PREFIXES = src.CONTENT_PREFIXES
_JSON_FIELDS = src.JSON_FIELDS
_HTTP_CODE_IN_MESSAGE = re.compile(src.HTTP_CODE_IN_MESSAGE)
_NAMING_KINDS = src.NAMING_KINDS
_from_timestamp = datetime.fromtimestamp
# Spans from one instrumentation carry the same attribute names in the same order, and
# where each field is, what is kept and what is content follows from the names alone. So
# that is worked out once per list of names (a _Shape) and each span then only copies
# values out with C-level getters. Bounded: an unusual sender's ever-new names empty the
# table rather than grow it.
_MAX_SHAPES = 1024

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


def _provider_name(value: Any) -> str:
    text = str(value).lower()
    return src.PROVIDER_ALIASES.get(text, text)[:64]


def _provider(scope_name: str, model: str | None) -> str | None:
    """The provider of a span that does not name one: from its scope, else its model."""
    if scope_name in src.SCOPE_PROVIDERS:
        return src.SCOPE_PROVIDERS[scope_name]
    if model:
        lowered = model.lower()
        for prefix, provider in src.MODEL_PREFIX_PROVIDERS:
            if lowered.startswith(prefix):
                return provider
    return None


def _str16(value: Any) -> str | None:
    return _str(value, 16)


def _str64(value: Any) -> str | None:
    return _str(value, 64)


def _finish(value: Any) -> str | None:
    return finish_reason(_str(value, 64))


def _error_type(value: Any) -> str | None:
    return _status.short_error_type(_str(value))


def _as_is(value: Any) -> Any:
    return value


# field -> its column value from the attribute's, applied once to each field a span has.
# total_tokens is converted only where it is used (output tokens missing): an odd value
# there (an infinite float) must not fail a span that does not need it.
_COLUMN: dict[str, Callable[[Any], Any]] = {
    "request_model": _str, "response_model": _str, "provider": _provider_name, "operation": _str64,
    "input_tokens": _int, "output_tokens": _int, "cache_read_tokens": _int, "cache_write_tokens": _int,
    "reasoning_tokens": _int, "total_tokens": _as_is, "task": _str, "prompt_name": _str,
    "prompt_version": _str, "ttft_s": _float, "streaming": _bool, "finish_reasons": _finish,
    "reported_cost": _float, "conversation_id": _str, "http_status": _int,
    sc.STATUS: str, sc.FAILURE_REASON: _str, sc.ERROR_TYPE: _error_type, sc.CALL_ID: _str16,
    sc.ATTEMPT: _int, sc.MAX_ATTEMPTS: _int, sc.CALL_DURATION_MS: _float, sc.IDEMPOTENCY_KEY: _str,
    sc.PROMPT_HASH: _str64,
}


def _status_of(record: SpanRecord, status: str | None, reason: str | None, error_type: str | None,
               http_status: int | None) -> tuple[str, str | None, str | None]:
    """(status, failure_reason, error_type) from llmlens' own status, else the span's."""
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
    if status is not None:
        if status not in sc.STATUSES:
            status = _status.ERROR
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
                found[name] = _COLUMN[name](value)
                break


def _content_value(value: Any, redact: Redactor | None, max_chars: int) -> Any:
    if redact is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return redact(text, max_chars)


def _is_content(key: str) -> bool:
    return key in _CONTENT_KEYS or key.startswith(_CONTENT_PREFIXES)


def _getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A C-level reader of these keys' values, as a tuple even for one key."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if keys:
        only = itemgetter(keys[0])
        return lambda attrs: (only(attrs),)
    return lambda attrs: ()


# Every field normalize reads, in the order it unpacks them.
_ORDER = tuple(_COLUMN)

# Entries per field in _MEMOS before it is emptied: senders name a few dozen models, tasks
# and versions, but the values come from outside.
_MAX_MEMO = 4096
# Longer values are converted each time, never kept: a sender's long or ever-new values
# must not make the memos hold megabytes (columns keep at most 255 characters anyway).
_MEMO_MAX_CHARS = 256
_MEMO_MAX_ITEMS = 8  # of a tuple (finish reasons)


class _Memo(dict[Any, Any]):
    """A field's column values by attribute value, for fields that repeat a few values.

    Rows repeat their model, provider, task and prompt version, and a hit here is a
    C-level lookup where converting is a Python call. Only short text (and short tuples of
    it) is remembered: ``True == 1 == 1.0`` would otherwise share one entry. An unhashable
    value raises ``TypeError``, and normalize converts the span's values without the memos.
    """

    __slots__ = ("convert",)

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        super().__init__()
        self.convert = convert

    def __missing__(self, value: Any) -> Any:
        result = self.convert(value)
        kind = type(value)
        if (kind is str and len(value) <= _MEMO_MAX_CHARS) or (
            kind is tuple and len(value) <= _MEMO_MAX_ITEMS
            and all(type(item) is str and len(item) <= _MEMO_MAX_CHARS for item in value)
        ):
            if len(self) >= _MAX_MEMO:
                self.clear()
            self[value] = result
        return result


# The fields whose values repeat across rows; ids, keys and counts do not.
_MEMOS: dict[str, Callable[[Any], Any]] = {
    field: _Memo(_COLUMN[field]).__getitem__
    for field in ("request_model", "response_model", "provider", "operation", "task", "prompt_name",
                  "prompt_version", "finish_reasons", sc.FAILURE_REASON, sc.ERROR_TYPE, sc.PROMPT_HASH)
}


class _Shape:
    """Where a span's facts are, from its attribute names alone (see _MAX_SHAPES)."""

    __slots__ = ("columns", "content", "json", "kept", "kept_values", "layout", "memos", "names", "passed",
                 "values")

    def __init__(self, keys: tuple[str, ...]) -> None:
        best: dict[str, tuple[int, str]] = {}
        kept: list[str] = []
        passed: list[str] = []
        for key in keys:
            slot = _INDEX.get(key)
            if slot is not None:
                field, rank = slot
                if field not in best or rank < best[field][0]:
                    best[field] = (rank, key)
            elif key not in _CONSUMED:
                passed.append(key)
                if not _is_content(key):
                    kept.append(key)
        # The best name of each field the span has; a span with an empty value there is
        # read name by name (_read_slowly), as another name may then speak.
        self.names = tuple(best)
        self.values = _getter(tuple(key for _rank, key in best.values()))
        self.columns = tuple(_COLUMN[field] for field in best)
        self.memos = tuple(_MEMOS.get(field, _COLUMN[field]) for field in best)
        # Column values (one per name, then None) -> every field in _ORDER.
        position = {field: i for i, field in enumerate(best)}
        self.layout = itemgetter(*(position.get(field, len(best)) for field in _ORDER))
        self.kept = tuple(kept)
        self.kept_values = _getter(self.kept)
        # Kept and content attributes in the span's order, for when content is captured.
        self.passed = tuple(passed)
        self.content = frozenset(passed) - frozenset(kept)
        present = set(keys)
        self.json = tuple(name for name in _JSON_FIELDS if name in present)

    def kept_attributes(self, attrs: Mapping[str, Any], capture_content: bool, redact: Redactor | None,
                        max_content_chars: int) -> dict[str, Any]:
        if capture_content and self.content:
            content = self.content
            return {key: _content_value(attrs[key], redact, max_content_chars) if key in content else attrs[key]
                    for key in self.passed}
        # tuples (OTel sequences) encode as JSON arrays as they are
        return dict(zip(self.kept, self.kept_values(attrs), strict=True))


_SHAPES: dict[tuple[str, ...], _Shape] = {}


def _learn(keys: tuple[str, ...]) -> _Shape:
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()
    shape = _SHAPES[keys] = _Shape(keys)
    return shape


def _read_slowly(attrs: Mapping[str, Any], capture_content: bool, redact: Redactor | None,
                 max_content_chars: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(column values found, attributes kept) name by name, for spans with empty values."""
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
        if _is_content(key):
            if capture_content:
                kept[key] = _content_value(value, redact, max_content_chars)
            continue
        kept[key] = value
    return {name: _COLUMN[name](value) for name, value in found.items()}, kept


# Every column, in SpanRow's order: each row starts as a copy (cheaper than a literal
# of this size, which Python builds in pieces and merges).
_ROW: dict[str, Any] = dict.fromkeys((
    "trace_id", "span_id", "parent_span_id", "service_name", "name", "start_time", "duration_ms",
    "time_to_first_token_ms", "task", "operation", "provider", "request_model", "response_model",
    "prompt_name", "prompt_version", "status", "failure_reason", "error_type", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
    "reported_cost_usd", "call_id", "attempt", "max_attempts", "final", "call_duration_ms",
    "idempotency_key", "streaming", "finish_reason", "conversation_id", "prompt_hash", "attributes",
))


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
    scope_name = record.scope_name
    if not is_llm_span(attrs, scope_name):
        return None
    keys = tuple(attrs)
    shape = _SHAPES.get(keys) or _learn(keys)
    values = shape.values(attrs)
    if None not in values and not shape.json:
        try:
            converted = (*map(call, shape.memos, values), None)
        except TypeError:  # an unhashable value (a list) in a remembered field
            converted = (*map(call, shape.columns, values), None)
        fields = shape.layout(converted)
        if capture_content and shape.content:
            kept = shape.kept_attributes(attrs, capture_content, redact, max_content_chars)
        else:  # tuples (OTel sequences) encode as JSON arrays as they are
            kept = dict(zip(shape.kept, shape.kept_values(attrs), strict=True))
    else:
        if None in values:
            found, kept = _read_slowly(attrs, capture_content, redact, max_content_chars)
        else:
            found = dict(zip(shape.names, map(call, shape.columns, values), strict=True))
            kept = shape.kept_attributes(attrs, capture_content, redact, max_content_chars)
        for json_name in shape.json:
            raw = attrs[json_name]
            if raw is not None:
                _fill_from_json(found, raw, _JSON_FIELDS[json_name])
        fields = tuple(map(found.get, _ORDER))
    (request_model, response_model, provider, operation, input_tokens, output_tokens, cache_read,
     cache_write, reasoning_tokens, total_tokens, task, prompt_name, prompt_version, ttft, streaming,
     finish, reported_cost, conversation_id, http_status, own_status, failure_reason, error_type,
     call_id, attempt, max_attempts, call_duration, idempotency_key, prompt_hash) = fields

    # Charts and filters group by the requested model; a span that only knows the
    # model that answered (a response read without the request) is grouped by that.
    request_model = request_model or response_model
    if input_tokens is not None and (cache_read or 0) + (cache_write or 0) > input_tokens:
        # The sender reported cache tokens on top of input (Anthropic's own shape): the
        # conventions count them inside input, so fold them in.
        input_tokens += (cache_read or 0) + (cache_write or 0)
    if output_tokens is None and input_tokens is not None:
        total = _int(total_tokens)
        if total is not None and total >= input_tokens:
            output_tokens = total - input_tokens
    if record.status_code != STATUS_ERROR and (own_status == _status.OK or (own_status is None and error_type is None)):
        # What _status_of would say, without the call: llmlens says ok, or nothing failed.
        status, failure_reason = _status.OK, None
    else:
        status, failure_reason, error_type = _status_of(record, own_status, failure_reason, error_type,
                                                        http_status)
    start = record.start_time_unix_nano
    duration_ms = max(record.end_time_unix_nano - start, 0) / 1e6
    if ttft is None and src.LANGFUSE_COMPLETION_START in attrs:
        ttft = _seconds_after(attrs[src.LANGFUSE_COMPLETION_START], start)
    if ttft is None and record.first_chunk_unix_nano:
        ttft = max(record.first_chunk_unix_nano - start, 0) / 1e9
    if ttft is not None and streaming is False:
        # A source that says the answer was not streamed has no first chunk to time:
        # OpenLIT writes the whole response time as its time to first token then.
        ttft = None
    final = attrs.get(sc.FINAL, True)
    if final is not True:
        final = _bool(final)
    if scope_name and scope_name != sc.SCOPE_NAME:
        kept["otel.scope.name"] = scope_name
    if capture_content and record.status_message and status != _status.OK:
        # Exception messages can quote user input, so they are content.
        kept["otel.status_description"] = _content_value(record.status_message, redact, max_content_chars)

    resource = record.resource_attributes
    row = cast("SpanRow", _ROW.copy())
    row["trace_id"] = record.trace_id
    row["span_id"] = record.span_id
    row["parent_span_id"] = record.parent_span_id
    row["service_name"] = _str(resource.get(sc.SERVICE_NAME)) if resource else None
    row["name"] = record.name[:255]
    row["start_time"] = _from_timestamp(start / 1e9, UTC)  # positional: keywords cost more here
    row["duration_ms"] = duration_ms
    row["time_to_first_token_ms"] = ttft * 1000.0 if ttft is not None else None
    # None unless the span names it: the ingest path then takes the nearest named
    # ancestor's (a workflow, chain, agent or trace name), even from another batch.
    row["task"] = task
    row["operation"] = operation
    row["provider"] = provider if provider is not None else _provider(scope_name, request_model or response_model)
    row["request_model"] = request_model
    row["response_model"] = response_model
    row["prompt_name"] = prompt_name
    row["prompt_version"] = prompt_version
    row["status"] = status
    row["failure_reason"] = failure_reason
    row["error_type"] = error_type
    row["input_tokens"] = input_tokens
    row["output_tokens"] = output_tokens
    row["cache_read_tokens"] = cache_read
    row["cache_write_tokens"] = cache_write
    row["reasoning_tokens"] = reasoning_tokens
    row["reported_cost_usd"] = reported_cost
    row["call_id"] = call_id or record.span_id
    row["attempt"] = attempt or 1
    row["max_attempts"] = max_attempts
    row["final"] = final
    # The logical call's duration rides on its final attempt only (DESIGN.md).
    row["call_duration_ms"] = call_duration if call_duration is not None else (duration_ms if final else None)
    row["idempotency_key"] = idempotency_key
    row["streaming"] = streaming if streaming is not None else ttft is not None
    row["finish_reason"] = finish
    row["conversation_id"] = conversation_id
    row["prompt_hash"] = prompt_hash
    row["attributes"] = kept
    return row
