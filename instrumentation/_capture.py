"""One provider request, one span: what the HTTP hooks record and which call it belongs to.

``_hooks`` calls :func:`begin` for every request an application sends through httpx or
httpx2; a request to a model API becomes an :class:`Exchange`: a span on llmlens' own
tracer provider, parented to whatever span is current (so it joins the application's
trace), with role ``request``. The response's bytes are fed to the wire parser as the
application reads them; the span ends when the body is exhausted (status from the HTTP
code), when it is closed or collected before its last event (``cancelled``, with what was
seen), or when the transport fails (classified like any exception).

Inside an ``@observe`` attempt, every request (any library, any depth, any thread the
context reached) joins the attempt's :class:`Group`: it carries the call's task, prompt
version, idempotency key, call id and attempt number, and the attempt span itself stops
being a row. The outcome the decorator decides later (``invalid_output``, ``timeout``,
``cancelled``) and ``final``/``call_duration_ms`` belong on the *last* request of the
attempt, so that request's span is held, already measured, until the next request of the
attempt starts (then it is not the last) or the attempt finishes (then it is); it ends
with its own true end time either way.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmlens import _config, _status, _wire
from llmlens import semconv as sc
from llmlens._attempt import ATTEMPT_KEY, Attempt, internal_error
from llmlens._merge import PROVIDER_SCOPES

__all__ = ["Exchange", "Group", "Library", "begin"]

# What a request row inherits from its attempt (and so from the call around it).
_FROM_ATTEMPT: Final = (sc.TASK, sc.PROMPT_VERSION, sc.PROMPT_NAME, sc.IDEMPOTENCY_KEY, sc.ATTEMPT,
                        sc.MAX_ATTEMPTS, sc.RETRY_REASON, sc.CALL_ID, sc.PROMPT_HASH, sc.INPUT_MESSAGES)
# A request outside any observed call is a call of its own.
_STANDALONE: Final = {sc.ATTEMPT: 1, sc.MAX_ATTEMPTS: 1, sc.FINAL: True}
# Statuses only the decorator can decide; they replace the last request's own status.
_DECIDED: Final = frozenset({_status.INVALID_OUTPUT, _status.TIMEOUT, _status.CANCELLED})
_ERROR: Final = StatusCode.ERROR


class Library:
    """What an exchange needs from the HTTP library it runs on (see ``_hooks``)."""

    name: str
    sync_stream: type
    async_stream: type

    def decoder(self, encoding: str) -> Any:
        raise NotImplementedError


class Outcome(NamedTuple):
    """What the attempt decided, for the request it lands on."""

    status: str | None  # None: the request keeps its own status
    reason: str | None
    final: bool
    call_duration_ms: float | None
    extra: Mapping[str, Any] | None


NOT_LAST: Final = Outcome(None, None, False, None, None)


def begin(request: Any, library: Library) -> Exchange | None:
    """An exchange for a request to a model API, or None (not one, capture off, llmlens broken)."""
    state = _config._state
    mode = state.capture
    if mode == "off":
        return None
    try:
        settings = state.settings or _config.get_settings()
        attempt = otel_context.get_value(ATTEMPT_KEY)
        if attempt is not None and (type(attempt) is not Attempt or attempt.ended):
            attempt = None  # a thread still running after its call ended: a call of its own
        if attempt is None and mode != "all":
            return None
        url = request.url
        info = _wire.read_request(request.method, url.host, url.port, url.path, _body(request), settings.hosts)
        if info is None:
            return None
        return Exchange(info, attempt, library)
    except Exception:
        internal_error("capturing a request")
        return None


def _body(request: Any) -> bytes | None:
    try:
        body = request.content
    except Exception:  # a streamed request body (an upload) that was not read: not a model call
        return None
    return body if type(body) is bytes else None


class Exchange:
    """One request and its response, from the first byte sent to the last byte read."""

    __slots__ = ("attrs", "decoder", "end_ns", "ended", "group", "headers", "info", "library", "reader", "seq",
                 "span", "start", "status_code")

    def __init__(self, info: _wire.RequestInfo, attempt: Attempt | None, library: Library) -> None:
        attrs = _wire.request_attributes(info)
        group = None
        if attempt is not None:
            group = attempt.group or _group_of(attempt)
            attrs.update(group.attrs)
        else:
            attrs.update(_STANDALONE)
        attrs[sc.SPAN_ROLE] = sc.ROLE_REQUEST
        model = attrs.get(sc.REQUEST_MODEL)
        name = f"{info.operation} {model}" if model else str(info.operation)
        tracer = _config._state.tracer or _config.get_tracer()
        self.span = span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attrs)
        _mark_describer(span)
        self.start = time.monotonic()
        self.info = info
        self.library = library
        self.group = group
        self.reader: _wire.ResponseReader | None = None
        self.decoder: Any = None
        self.status_code: int | None = None
        self.headers: Any = None
        self.ended = False
        self.seq = 0
        self.attrs: dict[str, Any] = {}
        self.end_ns = 0
        if group is not None:
            group.started(self)

    def responded(self, response: Any, stream_class: type) -> None:
        """Headers are in: start reading the body alongside the application."""
        try:
            self.status_code = code = response.status_code
            self.headers = headers = response.headers
            self.reader = reader = _wire.ResponseReader(self.info, code, headers)
            if getattr(response, "is_stream_consumed", False):
                # Read already (a transport that answers with a finished body, like a mock):
                # its decoded content is all there is.
                reader.feed(response.content)
                self.eof()
                return
            encoding = headers.get("content-encoding")
            if encoding:
                try:
                    self.decoder = self.library.decoder(encoding)
                except LookupError:  # an encoding this library cannot undo: no usage, still a row
                    self.reader = None
            response.stream = stream_class(response.stream, self)
            # A response dropped unread and unclosed still ends its span (as cancelled).
            weakref.finalize(response, self.closed)
        except Exception:
            internal_error("reading a response")
            self.reader = None
            self.eof()

    def feed(self, chunk: bytes) -> None:
        reader = self.reader
        if reader is None:
            return
        try:
            decoder = self.decoder
            reader.feed(chunk if decoder is None else decoder.decode(chunk))
        except Exception:
            # A parse failure never reaches the application: this row loses its usage.
            self.reader = None
            internal_error("parsing a response")

    def eof(self) -> None:
        """The whole body arrived: the HTTP status says how it went."""
        if self.ended:
            return
        if self.decoder is not None and self.reader is not None:
            try:
                self.reader.feed(self.decoder.flush())
            except Exception:
                self.reader = None
        code = self.status_code
        status, reason, retry_after = (_wire.http_status(code, self.headers) if code is not None
                                       else (_status.OK, None, None))
        if self.reader is not None:
            try:  # an error the answer itself carried (a stream failing mid-way under a 200)
                status, reason = self.reader.outcome()
            except Exception:
                internal_error("parsing a response")
        self._end(status, reason, None, retry_after)

    def closed(self) -> None:
        """Closed (or collected) by the application: before the answer's end, it walked away."""
        if self.ended:
            return
        reader = self.reader
        code = self.status_code
        if (reader is not None and reader.complete) or (code is not None and code >= 400):
            # An answer read to its end, or a refusal (an SDK about to retry closes it unread):
            # the HTTP status says it all.
            self.eof()
        else:
            self._end(_status.CANCELLED, "abandoned", None, None)

    def failed(self, exc: BaseException) -> None:
        if self.ended:
            return
        try:
            status, reason = _status.classify_exception(exc)
        except Exception:
            status, reason = _status.ERROR, "error"
        self._end(status, reason, exc, None)

    def _end(self, status: str, reason: str | None, exc: BaseException | None, retry_after: float | None) -> None:
        self.ended = True
        end_ns = time.time_ns()
        try:
            attrs: dict[str, Any] = {}
            reader = self.reader
            if reader is not None:
                try:
                    attrs = dict(reader.result())
                except Exception:
                    internal_error("parsing a response")
                first = reader.first_content_at
                if first is not None:
                    attrs[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = max(first - self.start, 0.0)
            attrs[sc.STATUS] = status
            if reason is not None and status != _status.OK:
                attrs[sc.FAILURE_REASON] = reason
            if self.status_code is not None:
                attrs[sc.HTTP_STATUS_CODE] = self.status_code
            if retry_after is not None:
                attrs[sc.RETRY_AFTER] = retry_after
            if exc is not None:
                attrs[sc.ERROR_TYPE] = type(exc).__qualname__
            group = self.group
            if group is None:
                _emit(self, attrs, end_ns, None)
            else:
                attrs.update(group.explicit)  # what the decorator was told wins over what was read
                group.ended(self, attrs, end_ns)
        except Exception:
            internal_error("ending a request")


def _mark_describer(span: Any) -> None:
    """Mark a provider SDK's or GenAI instrumentation's span around this request as merged.

    That span (anthropic's own tracing, openai-v2, OpenLLMetry, …) describes the same
    request and goes to the application's pipeline; should it also reach an llmlens
    collector, ``llmlens.merged_into`` tells the receiver it is not a second row.
    """
    current = trace.get_current_span()
    if current is span or not current.is_recording():
        return
    scope = getattr(current, "instrumentation_scope", None)
    name = getattr(scope, "name", "")
    if name == sc.SCOPE_NAME:
        return
    attributes = getattr(current, "attributes", None) or {}
    if name in PROVIDER_SCOPES or any(key.startswith("gen_ai.") for key in attributes):
        current.set_attribute(sc.MERGED_INTO, format(span.get_span_context().span_id, "016x"))


def _emit(exchange: Exchange, attrs: dict[str, Any], end_ns: int, outcome: Outcome | None) -> None:
    try:
        if outcome is not None:
            attrs[sc.FINAL] = outcome.final
            if outcome.final and outcome.call_duration_ms is not None:
                attrs[sc.CALL_DURATION_MS] = outcome.call_duration_ms
            decided = outcome.status
            if decided is not None and (decided in _DECIDED or attrs.get(sc.STATUS) == _status.OK):
                attrs[sc.STATUS] = decided
                if outcome.reason is not None:
                    attrs[sc.FAILURE_REASON] = outcome.reason
            if outcome.extra:
                attrs.update(outcome.extra)
        span = exchange.span
        span.set_attributes(attrs)
        status = attrs.get(sc.STATUS)
        if status != _status.OK and status != _status.CANCELLED:
            span.set_status(Status(_ERROR, attrs.get(sc.FAILURE_REASON)))
        span.end(end_time=end_ns)
    except Exception:
        internal_error("ending a request span")


class Group:
    """The requests captured inside one attempt; tells which one is the last."""

    __slots__ = ("attrs", "count", "explicit", "last", "lock", "open", "outcome", "pending", "seq")

    def __init__(self, attrs: dict[str, Any], explicit: dict[str, Any]) -> None:
        self.attrs = attrs
        self.explicit = explicit
        self.count = 0
        self.seq = 0
        self.lock = threading.Lock()
        self.open: list[Exchange] = []
        self.pending: Exchange | None = None  # ended, held in case it is the attempt's last
        self.outcome: Outcome | None = None
        self.last: Exchange | None = None

    def started(self, exchange: Exchange) -> None:
        with self.lock:
            self.count += 1
            self.seq += 1
            exchange.seq = self.seq
            self.open.append(exchange)
            held, self.pending = self.pending, None
        if held is not None:  # a newer request started: the held one is not the last
            _emit(held, held.attrs, held.end_ns, NOT_LAST)

    def ended(self, exchange: Exchange, attrs: dict[str, Any], end_ns: int) -> None:
        exchange.attrs, exchange.end_ns = attrs, end_ns
        held = None
        with self.lock:
            if exchange in self.open:
                self.open.remove(exchange)
            outcome = self.outcome
            pending = self.pending
            if outcome is not None:  # the attempt finished while this request was still open
                emit: Outcome | None = outcome if exchange is self.last else NOT_LAST
            elif (pending is not None and pending.seq > exchange.seq) or any(
                    other.seq > exchange.seq for other in self.open):
                emit = NOT_LAST  # a later request exists (concurrent ones: threads, gather)
            else:
                held, self.pending, emit = pending, exchange, None
        if held is not None:
            _emit(held, held.attrs, held.end_ns, NOT_LAST)
        if emit is not None:
            _emit(exchange, attrs, end_ns, emit)

    def settle(self, status: str, reason: str | None, final: bool, call_duration_ms: float | None,
               extra: Mapping[str, Any] | None) -> None:
        """The attempt ended with ``status``: land it on its last request."""
        try:
            outcome = Outcome(status if status != _status.OK else None, reason, final, call_duration_ms, extra)
            with self.lock:
                if self.outcome is not None:
                    return
                candidates = [*self.open, *([self.pending] if self.pending is not None else [])]
                self.last = max(candidates, key=lambda e: e.seq) if candidates else None
                self.outcome = outcome
                held, self.pending = self.pending, None
            if held is not None:
                _emit(held, held.attrs, held.end_ns, outcome if held is self.last else NOT_LAST)
        except Exception:
            internal_error("settling an attempt's requests")


_group_lock = threading.Lock()


def _group_of(attempt: Attempt) -> Group:
    with _group_lock:  # two threads of one attempt may start their first requests at once
        group: Group | None = attempt.group
        if group is None:
            group = attempt.group = Group(*_row_attrs(attempt))
    return group


def _row_attrs(attempt: Attempt) -> tuple[dict[str, Any], dict[str, Any]]:
    span = attempt.span
    source = getattr(span, "attributes", None) or {}
    attrs = {key: source[key] for key in _FROM_ATTEMPT if key in source}
    if sc.CALL_ID not in attrs:  # no retry policy: the attempt is the call
        attrs[sc.CALL_ID] = format(span.get_span_context().span_id, "016x")
    explicit: dict[str, Any] = {}
    given = attempt.spec.single_attrs
    if sc.PROVIDER_NAME in given:
        explicit[sc.PROVIDER_NAME] = given[sc.PROVIDER_NAME]
    if attempt.spec.has_model and sc.REQUEST_MODEL in given:
        explicit[sc.REQUEST_MODEL] = given[sc.REQUEST_MODEL]
    attrs.update(explicit)
    return attrs, explicit
