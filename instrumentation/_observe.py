"""``@llmlens.observe``: one decorator that makes a model call observable and well-behaved.

This module holds the public functions and the wrappers, one per shape of function
(sync, async, generator, async generator) plus the retry loops; what gets recorded
lives in ``_attempt``. The hot path (no retry, no validation, capture off) starts one
span with attributes prebuilt at decoration time, attaches it, calls the function,
reads the usage with a cached per-class extractor and sets everything with one
``set_attributes``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar, overload

from opentelemetry import context as otel_context

from llmlens import _status, _streams
from llmlens import semconv as sc
from llmlens._attempt import (
    ATTEMPT_KEY,
    NO_OUTPUT,
    RETRY,
    Attempt,
    Spec,
    abandon,
    begin,
    begin_call,
    fail,
    internal_error,
    last_output,
    release,
    settle,
)
from llmlens._retry import RetryPolicy
from llmlens._usage import extract

__all__ = ["current_output", "observe", "propagate", "record_usage"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


# --- the wrappers ----------------------------------------------------------------------------
def _sync_wrapper(spec: Spec) -> Callable[..., Any]:
    fn = spec.fn

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if spec.policy is not None:
            return _sync_retry(spec, args, kwargs)
        try:
            attempt = begin(spec, args, kwargs)
        except Exception:
            internal_error("starting a span")
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            fail(attempt, exc)
            raise
        finally:
            release(attempt)
        return settle(attempt, result, args, kwargs)

    return wrapper


def _sync_retry(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    fn, policy = spec.fn, spec.policy
    assert policy is not None
    try:
        call = begin_call(spec, args, kwargs)
    except Exception:
        internal_error("starting a span")
        return fn(*args, **kwargs)
    number, reason = 0, None
    while True:
        number += 1
        call.attempts = number
        try:
            attempt = begin(spec, args, kwargs, call, number, reason)
        except Exception:
            internal_error("starting a span")
            abandon(call, None)
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            retry = fail(attempt, exc, policy, number)
            if retry is None:
                raise
            delay, reason = retry
        else:
            release(attempt)  # validation runs outside the attempt's context
            outcome = settle(attempt, result, args, kwargs, policy, number)
            if outcome is not RETRY:
                return outcome
            delay, reason = policy.delay(number) or 0.0, _status.INVALID_OUTPUT
        finally:
            release(attempt)
        try:
            time.sleep(delay)
        except BaseException as exc:  # e.g. KeyboardInterrupt while backing off
            abandon(call, exc)
            raise


def _async_wrapper(spec: Spec) -> Callable[..., Any]:
    fn = spec.fn

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if spec.policy is not None:
            return await _async_retry(spec, args, kwargs)
        try:
            attempt = begin(spec, args, kwargs)
        except Exception:
            internal_error("starting a span")
            return await fn(*args, **kwargs)
        try:
            if spec.timeout is None:
                result = await fn(*args, **kwargs)
            else:
                async with asyncio.timeout(spec.timeout):
                    result = await fn(*args, **kwargs)
        except BaseException as exc:
            fail(attempt, exc)
            raise
        finally:
            release(attempt)
        return settle(attempt, result, args, kwargs)

    return wrapper


async def _async_retry(spec: Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    fn, policy = spec.fn, spec.policy
    assert policy is not None
    try:
        call = begin_call(spec, args, kwargs)
    except Exception:
        internal_error("starting a span")
        return await fn(*args, **kwargs)
    number, reason = 0, None
    while True:
        number += 1
        call.attempts = number
        try:
            attempt = begin(spec, args, kwargs, call, number, reason)
        except Exception:
            internal_error("starting a span")
            abandon(call, None)
            return await fn(*args, **kwargs)
        try:
            if spec.timeout is None:
                result = await fn(*args, **kwargs)
            else:
                async with asyncio.timeout(spec.timeout):
                    result = await fn(*args, **kwargs)
        except BaseException as exc:
            retry = fail(attempt, exc, policy, number)
            if retry is None:
                raise
            delay, reason = retry
        else:
            release(attempt)  # validation runs outside the attempt's context
            outcome = settle(attempt, result, args, kwargs, policy, number)
            if outcome is not RETRY:
                return outcome
            delay, reason = policy.delay(number) or 0.0, _status.INVALID_OUTPUT
        finally:
            release(attempt)
        try:
            await asyncio.sleep(delay)
        except BaseException as exc:  # cancelled while backing off
            abandon(call, exc)
            raise


def _generator_wrapper(spec: Spec) -> Callable[..., Any]:
    fn = spec.fn

    # A generator function stays one (inspect.isgeneratorfunction), and its span starts at
    # the first next(), when its body starts, under the context current then.
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            attempt = begin(spec, args, kwargs, attach=False)
            attempt.span.set_attribute(sc.REQUEST_STREAM, True)
        except Exception:
            internal_error("starting a span")
            return (yield from fn(*args, **kwargs))
        return (yield from _streams.traced_generator(fn(*args, **kwargs), attempt))

    return wrapper


def _async_generator_wrapper(spec: Spec) -> Callable[..., Any]:
    fn = spec.fn

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            attempt = begin(spec, args, kwargs, attach=False)
            attempt.span.set_attribute(sc.REQUEST_STREAM, True)
            inner = _streams.traced_async_generator(fn(*args, **kwargs), attempt)
        except Exception:
            internal_error("starting a span")
            inner = fn(*args, **kwargs)
        # Forward asend/athrow: an async generator has no `yield from`.
        try:
            item = await inner.__anext__()
            while True:
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    item = await inner.athrow(exc)
                else:
                    item = await inner.asend(sent)
        except StopAsyncIteration:
            return
        finally:
            await inner.aclose()

    return wrapper


# --- public API --------------------------------------------------------------------------------
@overload
def observe(fn: F, /) -> F: ...
@overload
def observe(*, task: str | None = None, prompt_version: str | None = None, model: str | None = None,
            provider: str | None = None, operation: str = "chat", output: Any = None,
            retry: RetryPolicy | int | None = None, timeout: float | None = None,
            idempotency_key: str | Callable[..., str] | None = None,
            capture_content: bool | None = None, hash_prompt: bool = False) -> Callable[[F], F]: ...


def observe(fn: Any = None, /, *, task: str | None = None, prompt_version: str | None = None,
            model: str | None = None, provider: str | None = None, operation: str = "chat",
            output: Any = None, retry: RetryPolicy | int | None = None, timeout: float | None = None,
            idempotency_key: str | Callable[..., str] | None = None,
            capture_content: bool | None = None, hash_prompt: bool = False) -> Any:
    """Trace a function that calls a model, with optional retries, timeout and output validation.

    Works on sync and async functions, sync and async generators, methods, and functions
    that return a provider stream (the span stays open until the stream is consumed,
    closed or dropped; a dropped stream ends as ``cancelled``). Use as ``@observe`` or
    ``@observe(...)``; the wrapper keeps the function's name, docstring and type hints, and
    returns exactly what the function returned.

    * ``task``, ``prompt_version`` (``"ticket_prompt@3"``; the part before ``@`` is also
      recorded as the prompt name), ``model``, ``provider``, ``operation``: recorded on
      every span; an explicit ``model``/``provider`` wins over what is inferred. Every
      provider request the function makes through httpx/httpx2 (any SDK or framework,
      streams consumed inside included) is captured as a row of this call with its own
      model and usage. For clients that never touch httpx, usage is read from what the
      function returns, or reported with :func:`record_usage`.
    * ``output``: a pydantic model class or a callable. The response's text (or parsed JSON,
      or a dict) is validated after each attempt; on failure the attempt's status is
      ``invalid_output`` and :class:`llmlens.InvalidOutput` is raised, unless ``retry``
      retries ``invalid_output``. The validated object is **not** returned in place of the
      response (that would change the function's type): read it with
      :func:`current_output` right after the call.
    * ``retry``: a :class:`llmlens.RetryPolicy` (or an int, the max retries). Each attempt
      is its own span under one logical call span; the SDK's own retries stay visible as
      requests of the attempt they happen in. What fails before a stream is returned is
      retried; a stream or generator function is never restarted once items may have
      reached the caller.
    * ``timeout``: seconds per attempt, counted from its start until its result is
      complete (a returned stream included). *Async* calls are cancelled at the deadline
      for real (``asyncio.timeout``): the attempt ends as ``timeout``, and
      ``TimeoutError`` is raised or, if the policy says so, retried; an async stream or
      generator is cut off the same way while it is awaited. *Sync* calls are not
      interrupted (Python cannot safely stop a running thread): a sync function runs to
      completion however long it takes and its result is returned and recorded as usual,
      so give the SDK client its own timeout too. What is enforced for sync code is the
      stream: a returned stream or generator still being read after the deadline is
      closed and raises ``TimeoutError`` at the next item.
    * ``idempotency_key``: a string, or a function of the call's arguments, recorded on
      every attempt of a call.
    * ``capture_content``: record the input (``messages=`` or the arguments) and the answer,
      redacted and capped. Default: :func:`llmlens.configure`'s setting, off.
    * ``hash_prompt``: record ``llmlens.prompt_hash`` even with capture off (costs one
      JSON serialisation of the arguments per call; always on when capture is on).

    >>> @observe(task="extract_ticket", prompt_version="ticket_prompt@3", output=Ticket,
    ...          retry=RetryPolicy(max_retries=2), timeout=20)  # doctest: +SKIP
    ... def extract(text: str) -> ChatCompletion:
    ...     return client.chat.completions.create(model="gpt-4o-mini", messages=[...])
    >>> response = extract("my printer is on fire")  # doctest: +SKIP
    >>> ticket = current_output(Ticket)  # doctest: +SKIP
    """
    policy = RetryPolicy.coerce(retry)
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")

    def decorate(func: Any) -> Any:
        if isinstance(func, (classmethod, staticmethod)):
            return type(func)(decorate(func.__func__))
        if not callable(func):
            raise TypeError("observe() decorates a function")
        spec = Spec(func, task, prompt_version, model, provider, operation, policy, timeout, output,
                     idempotency_key, capture_content, hash_prompt)
        if inspect.isasyncgenfunction(func):
            return _async_generator_wrapper(spec)
        if inspect.isgeneratorfunction(func):
            return _generator_wrapper(spec)
        if inspect.iscoroutinefunction(func):
            return _async_wrapper(spec)
        return _sync_wrapper(spec)

    if fn is not None:
        return decorate(fn)
    return decorate


@overload
def current_output() -> Any: ...
@overload
def current_output(kind: type[T], /) -> T: ...


def current_output(kind: Any = None, /) -> Any:
    """The object validated by the most recent ``@observe(output=...)`` call in this context.

    "This context" is the current thread, or the current asyncio task: read it right after
    the call, in the same function (a call run through ``asyncio.gather`` or
    ``create_task`` runs in a task of its own, so read it inside that task). Passing the
    expected class narrows the type for type checkers and checks it at runtime.

    >>> extract("my printer is on fire")  # doctest: +SKIP
    >>> ticket = llmlens.current_output(Ticket)  # doctest: +SKIP

    Raises ``LookupError`` when no observed call has validated an output in this context
    (or the latest one failed validation).
    """
    value = last_output.get()
    if value is NO_OUTPUT:
        raise LookupError("no @observe(output=...) call has validated an output in this context")
    if kind is not None and not isinstance(value, kind):
        raise TypeError(f"the current output is a {type(value).__name__}, not a {kind.__name__}")
    return value


def record_usage(response: Any = None, *, input_tokens: int | None = None, output_tokens: int | None = None,
                 cache_read_tokens: int | None = None, cache_write_tokens: int | None = None,
                 reasoning_tokens: int | None = None, model: str | None = None,
                 response_model: str | None = None, provider: str | None = None,
                 response_id: str | None = None, finish_reason: str | None = None) -> None:
    """Tell the current observed call what llmlens cannot read from its return value.

    Pass a ``response`` of a known shape, explicit numbers, or both (explicit numbers
    win). Counts follow the GenAI conventions: ``input_tokens`` *includes* cached input
    (cache reads and writes), ``output_tokens`` includes reasoning. Values recorded here
    take precedence over what is read from the function's return value. Outside an
    observed call this does nothing.

    >>> @observe(task="summarise")  # doctest: +SKIP
    ... def summarise(text: str) -> str:
    ...     reply = my_client.generate(text)
    ...     record_usage(input_tokens=reply.tokens_in, output_tokens=reply.tokens_out,
    ...                  model="my-model", provider="my-provider")
    ...     return reply.text
    """
    try:
        attempt = otel_context.get_value(ATTEMPT_KEY)
        if not isinstance(attempt, Attempt) or attempt.ended:
            return
        attrs = extract(response) if response is not None else {}
        for key, value in ((sc.USAGE_INPUT_TOKENS, input_tokens), (sc.USAGE_OUTPUT_TOKENS, output_tokens),
                           (sc.USAGE_CACHE_READ_INPUT_TOKENS, cache_read_tokens),
                           (sc.USAGE_CACHE_WRITE_INPUT_TOKENS, cache_write_tokens),
                           (sc.USAGE_REASONING_OUTPUT_TOKENS, reasoning_tokens),
                           (sc.REQUEST_MODEL, model), (sc.RESPONSE_MODEL, response_model),
                           (sc.PROVIDER_NAME, provider), (sc.RESPONSE_ID, response_id)):
            if value is not None:
                attrs[key] = value
        if finish_reason is not None:
            attrs[sc.RESPONSE_FINISH_REASONS] = [finish_reason]
        if attempt.recorded is None:
            attempt.recorded = attrs
        else:
            attempt.recorded.update(attrs)
    except BaseException:  # reading the response may run its properties: nothing of theirs escapes
        internal_error("record_usage")


def propagate(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, to run in another thread as part of the observed call that wraps it here.

    A thread pool does not carry the caller's context over, so a request a worker makes
    would not know which call it belongs to (it would be a row without a task). Wrap the
    function where the work is handed out; each run gets its own copy of this context.

    >>> @observe(task="summarise_all")  # doctest: +SKIP
    ... def summarise_all(docs):
    ...     with ThreadPoolExecutor() as pool:
    ...         return list(pool.map(llmlens.propagate(summarise_one), docs))
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        # One copy per run: a Context cannot be entered by two threads at once.
        return captured.copy().run(fn, *args, **kwargs)

    return run
