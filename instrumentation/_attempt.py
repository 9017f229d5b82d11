"""The recording side of ``@observe``: spans for calls and attempts, and what ends them.

``_observe`` decides *when* (wrappers for each shape of function, the retry loops);
this module decides *what is recorded*: the attributes fixed per decorated function
(:class:`Spec`, built once at decoration time), a running attempt (:class:`Attempt`,
also the observer of a returned stream), the logical call around retried attempts
(:class:`Call`), and the outcome of a result or an exception.

Span layout (see DESIGN.md, "What a row is"):

* no retry policy: one span, role ``attempt``, ``attempt=1``, ``final=True``, whose
  ``call_id`` is its own span id: one provider request, one row;
* with a policy that allows retries: a logical ``call`` span (not a row; it carries the
  final status and the attempt count) and one child ``attempt`` span per request, each
  with its own tokens, status and failure reason, linked by ``call_id``.

Every step is guarded: an error of llmlens' own is logged (once per burst) and
swallowed, and the user's result or exception passes through untouched.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmlens import _config, _status, _streams
from llmlens import semconv as sc
from llmlens._exceptions import InvalidOutput
from llmlens._redact import prompt_hash, redact_text
from llmlens._retry import RetryPolicy
from llmlens._usage import StreamUsage, extract, failed_request_model, response_text
from llmlens._validation import INVALID_OUTPUT_ERRORS, Validator, failure_reason_of, make_validator

logger = logging.getLogger("llmlens")

NO_OUTPUT: Final[Any] = object()
last_output: ContextVar[Any] = ContextVar("llmlens_output", default=NO_OUTPUT)
_set_span_in_context = trace.set_span_in_context
_attach = otel_context.attach
_detach_token = otel_context.detach
_ERROR_STATUS: Final = StatusCode.ERROR
_USAGE_PREFIX: Final = "gen_ai.usage."


# --- internal errors: logged once per burst, never raised ------------------------------------
class _Burst:
    __slots__ = ("last", "suppressed")

    def __init__(self) -> None:
        self.last = 0.0
        self.suppressed = 0


_burst = _Burst()


def internal_error(where: str) -> None:
    now = time.monotonic()
    if now - _burst.last < 60.0:
        _burst.suppressed += 1
        return
    suppressed, _burst.suppressed, _burst.last = _burst.suppressed, 0, now
    # Always called from an except block: exc_info is the error of llmlens' own. Its
    # traceback may chain the application's exception, whose __str__ may raise too, and a
    # handler may re-raise what it cannot format: logging must not break the call either.
    _log("llmlens: internal error in %s (the call was not affected; %d similar suppressed)", where, suppressed,
         exc_info=True)


def _log(message: str, *args: object, exc_info: BaseException | bool) -> None:
    try:
        logger.warning(message, *args, exc_info=exc_info)
    except BaseException:
        try:
            logger.warning(message, *args)
        except BaseException:
            pass


_validator_burst = _Burst()


def validator_bug(error: BaseException) -> None:
    """The ``output=`` validator raised something that is not a verdict on the output."""
    now = time.monotonic()
    if now - _validator_burst.last < 60.0:
        _validator_burst.suppressed += 1
        return
    suppressed, _validator_burst.suppressed, _validator_burst.last = _validator_burst.suppressed, 0, now
    _log("llmlens: the output validator failed with %s, a bug in the validator rather than invalid output; the "
         "result is returned unvalidated (%d similar suppressed)", type(error).__name__, suppressed, exc_info=error)


# --- what is fixed per decorated function ----------------------------------------------------
class Spec:
    """Everything known at decoration time, so calls only read it."""

    __slots__ = (
        "attempt_attrs",
        "call_attrs",
        "capture",
        "drop_first",
        "fn",
        "has_model",
        "hash_prompt",
        "idempotency_key",
        "name",
        "policy",
        "signature",
        "single_attrs",
        "timeout",
        "validator",
    )

    def __init__(self, fn: Callable[..., Any], task: str | None, prompt_version: str | None,
                 model: str | None, provider: str | None, operation: str, policy: RetryPolicy | None,
                 timeout: float | None, output: Any, idempotency_key: str | Callable[..., str] | None,
                 capture_content: bool | None, hash_prompt: bool) -> None:
        self.fn = fn
        self.name = task or getattr(fn, "__qualname__", None) or "llm.call"
        common: dict[str, Any] = {sc.OPERATION_NAME: operation}
        if task:
            common[sc.TASK] = task
        if prompt_version:
            common[sc.PROMPT_VERSION] = prompt_version
            if "@" in prompt_version:  # "ticket_prompt@3": the name is what comes before the @
                common[sc.PROMPT_NAME] = prompt_version.rpartition("@")[0]
        if model:
            common[sc.REQUEST_MODEL] = model
        if provider:
            common[sc.PROVIDER_NAME] = provider
        if isinstance(idempotency_key, str):
            common[sc.IDEMPOTENCY_KEY] = idempotency_key
        self.policy = policy if policy is not None and policy.max_retries > 0 else None
        self.single_attrs = {**common, sc.SPAN_ROLE: sc.ROLE_ATTEMPT, sc.ATTEMPT: 1, sc.MAX_ATTEMPTS: 1,
                             sc.FINAL: True}
        max_attempts = self.policy.max_attempts if self.policy else 1
        self.call_attrs = {**common, sc.SPAN_ROLE: sc.ROLE_CALL, sc.MAX_ATTEMPTS: max_attempts}
        self.attempt_attrs = {**common, sc.SPAN_ROLE: sc.ROLE_ATTEMPT, sc.MAX_ATTEMPTS: max_attempts}
        self.timeout = timeout
        self.validator: Validator | None = make_validator(output, response_text) if output is not None else None
        self.idempotency_key = idempotency_key if callable(idempotency_key) else None
        self.has_model = model is not None
        self.capture = capture_content
        self.hash_prompt = hash_prompt
        self.signature: inspect.Signature | None = None
        self.drop_first = False
        try:
            self.signature = inspect.signature(fn)
            params = list(self.signature.parameters)
            self.drop_first = bool(params) and params[0] in ("self", "cls")
        except (TypeError, ValueError):
            pass

    def input_text(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The call's input as JSON (messages= if given, else the arguments); only when asked for."""
        messages = kwargs.get("messages")
        if isinstance(messages, list):
            return json.dumps(messages, default=_json_default, ensure_ascii=False)
        if self.signature is not None:
            try:
                bound = self.signature.bind_partial(*args, **kwargs).arguments
                if self.drop_first and bound:
                    bound.pop(next(iter(bound)))
                return json.dumps(bound, default=_json_default, ensure_ascii=False)
            except TypeError:
                pass
        return json.dumps({"args": args, "kwargs": kwargs}, default=_json_default, ensure_ascii=False)


def _json_default(obj: Any) -> Any:
    # Arguments are the application's objects: any of their methods may raise anything.
    try:
        dump = getattr(obj, "model_dump", None)
        if callable(dump):
            return dump()
    except BaseException:
        pass
    try:
        return str(obj)
    except BaseException:
        return f"<{type(obj).__name__}>"


def _settings() -> _config.Settings:
    return _config._state.settings or _config.get_settings()


def _tracer() -> trace.Tracer:
    return _config._state.tracer or _config.get_tracer()


# --- one attempt: one provider request, one span --------------------------------------------
class Attempt:
    """A running attempt. Also the observer of a stream the call returned (see ``_streams``)."""

    __slots__ = (
        "call",
        "capture",
        "context",
        "deadline",
        "ended",
        "first_item",
        "group",
        "outcome",
        "recorded",
        "span",
        "spec",
        "start",
        "token",
        "usage",
    )

    def __init__(self, spec: Spec, span: trace.Span, start: float, call: Call | None) -> None:
        self.spec = spec
        self.span = span
        self.context: otel_context.Context | None = None
        self.token: Token[otel_context.Context] | None = None
        self.start = start
        self.deadline = start + spec.timeout if spec.timeout is not None else None
        self.recorded: dict[str, Any] | None = None
        self.usage: StreamUsage | None = None
        self.first_item = True
        self.ended = False
        self.call = call
        self.capture = False
        self.outcome: Any = NO_OUTPUT
        self.group: Any = None  # the requests the HTTP layer captured inside (``_capture.Group``)

    # Observer protocol, for streams -------------------------------------------------------
    def item(self, item: Any) -> None:
        try:
            if self.ended:
                return
            if self.first_item:
                self.first_item = False
                self.span.set_attribute(sc.RESPONSE_TIME_TO_FIRST_CHUNK, time.monotonic() - self.start)
            usage = self.usage
            if usage is None:
                usage = self.usage = StreamUsage(self.capture or self.spec.validator is not None)
            usage.add(item)
        except BaseException:  # a chunk's property may raise anything; the stream goes on
            internal_error("stream item")

    def done(self, exc: BaseException | None) -> BaseException | None:
        """The stream ended: exhausted (exc None), or failed. Returns InvalidOutput to raise."""
        if self.ended:
            return None
        raised: BaseException | None = None  # the validator's own BaseException, which goes on
        try:
            usage = self.usage
            attrs = dict(usage.attrs) if usage is not None else {}
            if exc is not None:
                status, reason = _status.classify_exception(exc)
                self.finish(status, reason, attrs, exc)
                return None
            try:
                text = usage.text() if usage is not None else None
            except BaseException:  # the chunks are foreign objects
                internal_error("reading a stream's text")
                text = None
            if self.spec.validator is not None:
                try:
                    self.outcome = self.spec.validator(text)
                except INVALID_OUTPUT_ERRORS as error:
                    reason = failure_reason_of(error)
                    failure = InvalidOutput(reason, error)
                    self.finish(_status.INVALID_OUTPUT, reason, attrs, failure)
                    failure.__cause__ = error
                    return failure
                except Exception as error:
                    validator_bug(error)
                except BaseException as interrupt:  # the validator's own KeyboardInterrupt: end, then let it go
                    raised = interrupt
                    self.finish(*_status.classify_exception(interrupt), attrs, interrupt)
                    raise
                else:
                    last_output.set(self.outcome)
            if self.capture and text is not None:
                attrs[sc.OUTPUT_MESSAGES] = _output_messages(text, _settings().max_content_chars)
            self.finish(_status.OK, None, attrs, None)
        except BaseException as error:  # values read from the stream may raise anything when recorded
            if error is raised:
                raise
            internal_error("stream end")
        finally:
            if self.recording:  # whatever failed above, the span ends and makes its row
                self.end_anyway()
        return None

    def cancel(self) -> None:
        if not self.ended:
            try:
                usage = self.usage
                self.finish(_status.CANCELLED, "abandoned", dict(usage.attrs) if usage else {}, None)
            except BaseException:
                internal_error("stream cancel")
                self.end_anyway()

    # --------------------------------------------------------------------------------------
    def finish(self, status: str, reason: str | None, attrs: dict[str, Any],
               exc: BaseException | None, final: bool = True) -> None:
        """End the span with the outcome. Never raises (callers guard it)."""
        if self.ended:
            return
        self.ended = True
        span = self.span
        if self.recorded:
            attrs.update(self.recorded)
        attrs[sc.STATUS] = status
        if reason is not None:
            attrs[sc.FAILURE_REASON] = reason
        call = self.call
        if call is None:
            attrs[sc.CALL_ID] = format(span.get_span_context().span_id, "016x")
        else:
            attrs[sc.FINAL] = final
            if final:
                attrs[sc.CALL_DURATION_MS] = (time.monotonic() - call.start) * 1000.0
        if exc is not None:
            attrs[sc.ERROR_TYPE] = type(exc).__qualname__
        group = self.group
        if group is not None:
            # The captured requests are the rows; this span is their context and must not
            # count their tokens a second time (here or in an APM that sums them).
            for key in [key for key in attrs if key.startswith(_USAGE_PREFIX)]:
                del attrs[key]
            attrs[sc.REQUESTS] = group.count
        span.set_attributes(attrs)
        if exc is not None:
            try:
                _record_exception(span, exc, self.capture)
            except BaseException:  # the exception's own __str__ may raise
                internal_error("recording an exception")
        if status != _status.OK and status != _status.CANCELLED:
            span.set_status(Status(_ERROR_STATUS, reason))
        span.end()
        if group is not None:
            call_ms = attrs.get(sc.CALL_DURATION_MS, (time.monotonic() - self.start) * 1000.0) if final else None
            output = attrs.get(sc.OUTPUT_MESSAGES)
            group.settle(status, reason, final, call_ms, {sc.OUTPUT_MESSAGES: output} if output else None)
        if call is not None and final:
            call.finish(status, reason, attrs)

    def end_anyway(self) -> None:
        """End the spans recording failed to end, so the attempt still makes its row."""
        self.ended = True
        spans = [self.span] if self.call is None else [self.span, self.call.span]
        for span in spans:
            try:
                if span.is_recording():
                    span.end()
            except BaseException:
                internal_error("ending a span")

    @property
    def recording(self) -> bool:
        return self.span.is_recording()


def _record_exception(span: trace.Span, exc: BaseException, capture: bool) -> None:
    # Exception messages may quote prompts or answers (SDK errors echo response bodies):
    # with capture off only the class and the frames are recorded.
    if capture:
        span.record_exception(exc, escaped=True)
        return
    frames = "".join(traceback.format_tb(exc.__traceback__)) if exc.__traceback__ else ""
    name = type(exc).__qualname__
    span.add_event("exception", {"exception.type": name, "exception.message": name,
                                 "exception.stacktrace": frames + name, "exception.escaped": True})


def _output_messages(text: str, max_chars: int) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": redact_text(text, max_chars)}]}],
                      ensure_ascii=False)


def _input_messages(text: str, messages: Any, max_chars: int) -> str:
    """``gen_ai.input.messages``: chat messages in the conventions' shape, else the arguments as one."""
    if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
        # The budget is shared, so a long conversation cannot multiply the cap.
        budget = max(max_chars // max(len(messages), 1), 64)
        converted = []
        for message in messages:
            content = message.get("content")
            text_of = content if isinstance(content, str) else json.dumps(content, default=_json_default,
                                                                         ensure_ascii=False)
            converted.append({"role": str(message["role"]),
                              "parts": [{"type": "text", "content": redact_text(text_of, budget)}]})
        return json.dumps(converted, ensure_ascii=False)
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": redact_text(text, max_chars)}]}],
                      ensure_ascii=False)


class Call:
    """The logical call around retried attempts: a span that is not a row."""

    __slots__ = ("attempts", "call_id", "context", "key", "span", "start")

    def __init__(self, span: trace.Span, start: float, key: str | None) -> None:
        self.span = span
        self.context = _set_span_in_context(span)
        self.call_id = format(span.get_span_context().span_id, "016x")
        self.start = start
        self.attempts = 0
        self.key = key

    def finish(self, status: str, reason: str | None, final_attrs: dict[str, Any]) -> None:
        attrs: dict[str, Any] = {sc.STATUS: status, sc.ATTEMPT: self.attempts,
                                 sc.CALL_DURATION_MS: (time.monotonic() - self.start) * 1000.0}
        if reason is not None:
            attrs[sc.FAILURE_REASON] = reason
        # Model and provider help a trace viewer; tokens stay on the attempts (no double count).
        for key in (sc.REQUEST_MODEL, sc.RESPONSE_MODEL, sc.PROVIDER_NAME, sc.ERROR_TYPE):
            if key in final_attrs:
                attrs[key] = final_attrs[key]
        self.span.set_attributes(attrs)
        if status != _status.OK and status != _status.CANCELLED:
            self.span.set_status(Status(_ERROR_STATUS, reason))
        self.span.end()


# --- starting spans ----------------------------------------------------------------------------
ATTEMPT_KEY: Final = otel_context.create_key("llmlens-attempt")
RETRY: Final[Any] = object()


def begin(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any], call: Call | None = None,
           number: int = 1, retry_reason: str | None = None, attach: bool = True) -> Attempt:
    if call is None:
        attrs = spec.single_attrs
        if spec.idempotency_key is not None:
            key = _key_of(spec, args, kwargs)
            if key is not None:
                attrs = {**attrs, sc.IDEMPOTENCY_KEY: key}
        parent = None
    else:
        attrs = dict(spec.attempt_attrs)
        attrs[sc.ATTEMPT] = number
        attrs[sc.CALL_ID] = call.call_id
        if call.key is not None:
            attrs[sc.IDEMPOTENCY_KEY] = call.key
        if retry_reason is not None:
            attrs[sc.RETRY_REASON] = retry_reason
        parent = call.context
    if kwargs and not spec.has_model:
        model = kwargs.get("model")
        if isinstance(model, str):
            attrs = {**attrs, sc.REQUEST_MODEL: model}
    span = _tracer().start_span(spec.name, context=parent, kind=SpanKind.CLIENT, attributes=attrs)
    attempt = Attempt(spec, span, time.monotonic(), call)
    capture = spec.capture
    if capture is None:
        capture = _settings().capture_content
    if capture or spec.hash_prompt:
        try:
            _record_input(attempt, capture, args, kwargs)
        except BaseException:  # an argument's __str__ or __repr__ may raise anything
            internal_error("recording the input")
    ctx = otel_context.set_value(ATTEMPT_KEY, attempt, _set_span_in_context(span, parent))
    attempt.context = ctx
    if attach:
        attempt.token = _attach(ctx)
    if spec.validator is not None:
        # A stale object from an earlier call must not pass for this call's output.
        last_output.set(NO_OUTPUT)
    return attempt


def _record_input(attempt: Attempt, capture: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    attempt.capture = capture
    text = attempt.spec.input_text(args, kwargs)
    attrs: dict[str, Any] = {}
    digest = prompt_hash(text)
    if digest is not None:
        attrs[sc.PROMPT_HASH] = digest
    if capture:
        attrs[sc.INPUT_MESSAGES] = _input_messages(text, kwargs.get("messages"), _settings().max_content_chars)
    attempt.span.set_attributes(attrs)


def _key_of(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """The idempotency key a key function gives for these arguments (None if it fails)."""
    assert spec.idempotency_key is not None
    try:
        return str(spec.idempotency_key(*args, **kwargs))[:255]
    except Exception:  # a broken key function must not break the call it describes
        internal_error("computing the idempotency key")
        return None


def begin_call(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
    attrs = spec.call_attrs
    key_value = attrs.get(sc.IDEMPOTENCY_KEY)
    if spec.idempotency_key is not None:
        key_value = _key_of(spec, args, kwargs)
        if key_value is not None:
            attrs = {**attrs, sc.IDEMPOTENCY_KEY: key_value}
    span = _tracer().start_span(spec.name, kind=SpanKind.INTERNAL, attributes=attrs)
    return Call(span, time.monotonic(), key_value)


def abandon(call: Call, exc: BaseException | None) -> None:
    """End a logical call between attempts (interrupted while backing off, or llmlens failed)."""
    try:
        status, reason = _status.classify_exception(exc) if exc is not None else (_status.ERROR, "llmlens")
        call.finish(status, reason, {})
    except Exception:
        internal_error("ending a call")


def release(attempt: Attempt) -> None:
    if attempt.token is not None:
        try:
            _detach_token(attempt.token)
        except Exception:
            internal_error("context detach")
        attempt.token = None



# --- ending attempts -----------------------------------------------------------------------------
def fail(attempt: Attempt, exc: BaseException, policy: RetryPolicy | None = None,
          number: int = 1) -> tuple[float, str] | None:
    """Record a failed attempt. Returns (delay, status) when the policy retries it."""
    # The exception is the application's (or its SDK's): any of its properties may raise
    # anything, and what llmlens reads from it must not cost the span or the retry.
    try:
        status, reason = _status.classify_exception(exc)
    except BaseException:
        internal_error("classifying an exception")
        status, reason = _status.ERROR, type(exc).__name__
    attrs: dict[str, Any] = {}
    try:
        if not attempt.spec.has_model and (model := failed_request_model(exc)) is not None:
            attrs[sc.REQUEST_MODEL] = model
    except BaseException:
        internal_error("reading a failed request")
    try:
        if policy is not None and policy.should_retry(status, number):
            try:
                delay = policy.delay(number, exc)
            except BaseException:  # Retry-After unreadable: the policy's own backoff
                internal_error("reading Retry-After")
                delay = policy.delay(number)
            if delay is not None:
                attempt.finish(status, reason, attrs, exc, final=False)
                return delay, status
        attempt.finish(status, reason, attrs, exc)
    except BaseException:  # values read from the exception may raise anything when recorded
        internal_error("recording a failure")
    finally:
        if attempt.recording:
            attempt.end_anyway()
    return None


def settle(attempt: Attempt, result: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
            policy: RetryPolicy | None = None, number: int = 1) -> Any:
    """Record a returned result; returns what the caller gets, or ``RETRY``. May raise InvalidOutput."""
    try:
        kind = _streams.stream_kind(result)
        target = result
        if kind == _streams.WRAPPER:
            # Another instrumentation's proxy: a stream inside is traced where it is, anything
            # else is read through the proxy like a plain response.
            inner = _streams.unwrap(result)
            if inner is None:
                kind = _streams.NOT_A_STREAM
                target = getattr(result, "__wrapped__", result)
        if kind == _streams.COROUTINE:
            return _settle_later(attempt, result, args, kwargs)
        if kind:
            attempt.span.set_attribute(sc.REQUEST_STREAM, True)
            return _streams.wrap_stream(result, attempt, kind)
        # A response whose request the HTTP layer captured was read there already.
        attrs = extract(target) if attempt.group is None else {}
        if sc.PROVIDER_NAME in attempt.spec.single_attrs:
            attrs.pop(sc.PROVIDER_NAME, None)  # an explicit observe(provider=) wins over inference
    except BaseException:  # a result's property may raise anything, SystemExit included
        internal_error("reading the response")
        attrs = {}
    validator = attempt.spec.validator
    if validator is not None:
        try:
            value = validator(result)
        except INVALID_OUTPUT_ERRORS as error:
            return _invalid(attempt, error, attrs, policy, number)
        except Exception as error:
            validator_bug(error)
        except BaseException as exc:  # the validator's own KeyboardInterrupt: end, then let it go
            fail(attempt, exc)
            raise
        else:
            attempt.outcome = value
            last_output.set(value)
    try:
        if attempt.capture:
            text = response_text(result)
            if text is not None:
                attrs[sc.OUTPUT_MESSAGES] = _output_messages(text, _settings().max_content_chars)
    except BaseException:
        internal_error("recording the answer")
    try:
        attempt.finish(_status.OK, None, attrs, None)
    except BaseException:  # values read from the result may raise anything when recorded
        internal_error("recording a result")
    finally:
        if attempt.recording:
            attempt.end_anyway()
    return result


async def _settle_later(attempt: Attempt, awaitable: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
    """``def f(): return async_client.create(...)``: the request runs when the caller awaits."""
    token = _attach(attempt.context) if attempt.context is not None else None
    try:
        timeout = attempt.spec.timeout
        if timeout is None:
            result = await awaitable
        else:
            async with asyncio.timeout(timeout):
                result = await awaitable
    except BaseException as exc:
        fail(attempt, exc)
        raise
    finally:
        if token is not None:
            _detach_token(token)
    return settle(attempt, result, args, kwargs)


def _invalid(attempt: Attempt, error: BaseException, attrs: dict[str, Any], policy: RetryPolicy | None,
             number: int) -> Any:
    reason = "ValidationError"
    failure: InvalidOutput | None = None
    try:
        reason = failure_reason_of(error)
        failure = InvalidOutput(reason, error, attempts=number)
        if policy is not None and policy.should_retry(_status.INVALID_OUTPUT, number):
            attempt.finish(_status.INVALID_OUTPUT, reason, attrs, failure, final=False)
            return RETRY
        attempt.finish(_status.INVALID_OUTPUT, reason, attrs, failure)
    except BaseException:
        internal_error("recording invalid output")
    finally:
        if attempt.recording:
            attempt.end_anyway()
    # Recorded above before the cause is attached: the span's stack trace must not carry the
    # validation error, whose message quotes the model's output.
    if failure is None:
        failure = InvalidOutput(reason, error, attempts=number)
    raise failure from error
