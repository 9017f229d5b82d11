"""Keeping an attempt's span open while the caller consumes what the call returned.

A call that returns a generator or a provider stream is not over when it returns: the
tokens, the time to first token and the outcome arrive while the caller iterates. The
span ends on exhaustion (``ok``), on an error (classified), on ``close()`` or when the
stream is garbage-collected unread (``cancelled``).

Provider streams (openai/anthropic ``Stream``, ``AsyncStream``, ``MessageStream``) are
instrumented in place rather than proxied: their ``__next__``, ``__iter__``,
``text_stream``, ``until_done`` and ``get_final_message`` all pull from one private
``_iterator``, so replacing that on the instance sees every item while the caller keeps
the very object (and type) the SDK returned. Nothing is buffered unless validation or
content capture asked for the text.
"""

from __future__ import annotations

import asyncio
import time
import types
import weakref
from collections.abc import AsyncGenerator, Generator
from typing import Any, Final, Protocol

from opentelemetry import context as otel_context

__all__ = ["Observer", "stream_kind", "traced_async_generator", "traced_generator", "wrap_stream"]

NOT_A_STREAM: Final = 0
GENERATOR: Final = 1
ASYNC_GENERATOR: Final = 2
SDK_STREAM: Final = 3
SDK_ASYNC_STREAM: Final = 4
MANAGER: Final = 5
WRAPPER: Final = 6
COROUTINE: Final = 7  # a sync function returned an awaitable call (async client, sync def)

# SDK classes whose iteration goes through a private ``_iterator`` and which have ``close()``.
_SYNC_STREAMS: Final = frozenset({"Stream", "MessageStream", "BetaMessageStream", "ChatCompletionStream",
                                  "ResponseStream"})
_ASYNC_STREAMS: Final = frozenset({"AsyncStream", "AsyncMessageStream", "BetaAsyncMessageStream",
                                   "AsyncChatCompletionStream", "AsyncResponseStream"})
# Helpers whose request is sent in __enter__ / __aenter__, which returns one of the above.
_MANAGERS: Final = frozenset({"MessageStreamManager", "AsyncMessageStreamManager", "BetaMessageStreamManager",
                              "BetaAsyncMessageStreamManager", "ChatCompletionStreamManager",
                              "AsyncChatCompletionStreamManager", "ResponseStreamManager",
                              "AsyncResponseStreamManager"})
# Other instrumentations' proxies around an SDK stream: opentelemetry-instrumentation-openai-v2
# by name (``.stream``), and every wrapt proxy (OpenLLMetry, OpenInference; ``.__wrapped__``).
_WRAPPERS: Final = frozenset({"ChatStreamWrapper", "LegacyChatStreamWrapper", "ResponseStreamWrapper",
                              "AsyncResponseStreamWrapper"})
_PROXIES: Final = frozenset({"ObjectProxy", "CallableObjectProxy", "BaseObjectProxy"})
_SDK_ROOTS: Final = frozenset({"openai", "anthropic", "opentelemetry"})


class Observer(Protocol):
    """What a stream reports to: the attempt it belongs to (see ``_observe._Attempt``)."""

    @property
    def context(self) -> otel_context.Context | None: ...
    @property
    def deadline(self) -> float | None: ...

    def item(self, item: Any) -> None: ...
    def done(self, exc: BaseException | None) -> BaseException | None: ...
    def cancel(self) -> None: ...


_kinds: dict[type, int] = {}


def _classify(klass: type) -> int:
    if klass is types.GeneratorType:
        return GENERATOR
    if klass is types.AsyncGeneratorType:
        return ASYNC_GENERATOR
    if klass is types.CoroutineType:
        return COROUTINE
    names = {base.__name__ for base in klass.__mro__}
    if names & _PROXIES:
        return WRAPPER
    if klass.__module__.partition(".")[0] not in _SDK_ROOTS:
        return NOT_A_STREAM
    if names & _SYNC_STREAMS:
        return SDK_STREAM
    if names & _ASYNC_STREAMS:
        return SDK_ASYNC_STREAM
    if names & _MANAGERS:
        return MANAGER
    if names & _WRAPPERS:
        return WRAPPER
    return NOT_A_STREAM


def stream_kind(obj: Any) -> int:
    """Which kind of stream ``obj`` is; ``NOT_A_STREAM`` (0) for ordinary results. Cached per class."""
    klass = type(obj)
    kind = _kinds.get(klass)
    if kind is None:
        kind = _classify(klass)
        if len(_kinds) < 1024:
            _kinds[klass] = kind
    return kind


def _check_deadline(observer: Observer) -> None:
    deadline = observer.deadline
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError("llmlens: the call's timeout expired while streaming")


def traced_generator(gen: Generator[Any, Any, Any], observer: Observer) -> Generator[Any, Any, Any]:
    """Re-yield ``gen`` (``send`` and ``throw`` included) with the span current while it runs."""
    ctx = observer.context
    throwing = False
    arg: Any = None
    while True:
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            _check_deadline(observer)
            item = gen.throw(arg) if throwing else gen.send(arg)
        except StopIteration as stop:
            failure = observer.done(None)
            if failure is not None:
                raise failure  # noqa: B904 - keeps the failure's own cause (the validation error)
            return stop.value
        except BaseException as exc:
            if isinstance(exc, TimeoutError) and not throwing:
                gen.close()
            observer.done(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        observer.item(item)
        try:
            arg = yield item
            throwing = False
        except GeneratorExit:
            observer.cancel()
            gen.close()
            raise
        except BaseException as exc:
            arg, throwing = exc, True


async def traced_async_generator(agen: AsyncGenerator[Any, Any], observer: Observer) -> AsyncGenerator[Any, Any]:
    """The async twin of :func:`traced_generator`; the deadline bounds each ``__anext__`` for real."""
    ctx = observer.context
    throwing = False
    arg: Any = None
    while True:
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            step = agen.athrow(arg) if throwing else agen.asend(arg)
            deadline = observer.deadline
            if deadline is None:
                item = await step
            else:
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
                    item = await step
        except StopAsyncIteration:
            failure = observer.done(None)
            if failure is not None:
                raise failure  # noqa: B904 - keeps the failure's own cause (the validation error)
            return
        except BaseException as exc:
            observer.done(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        observer.item(item)
        try:
            arg = yield item
            throwing = False
        except GeneratorExit:
            observer.cancel()
            await agen.aclose()
            raise
        except BaseException as exc:
            arg, throwing = exc, True


def _patch_sync(stream: Any, observer: Observer) -> None:
    stream._iterator = traced_generator(stream._iterator, _NoContext(observer))
    # The class's close and a weak reference: a closure over the bound method, stored on the
    # instance, would make a cycle and leave a dropped stream to the cyclic collector.
    klass_close = type(stream).close
    ref = weakref.ref(stream)

    def close() -> None:
        # Closing a stream early is the caller walking away from the rest of the answer.
        observer.cancel()
        target = ref()
        if target is not None:
            klass_close(target)

    stream.close = close
    weakref.finalize(stream, observer.cancel)


def _patch_async(stream: Any, observer: Observer) -> None:
    stream._iterator = traced_async_generator(stream._iterator, _NoContext(observer))
    klass_close = type(stream).close
    ref = weakref.ref(stream)

    async def close() -> None:
        observer.cancel()
        target = ref()
        if target is not None:
            await klass_close(target)

    stream.close = close
    weakref.finalize(stream, observer.cancel)


class _NoContext:
    """An observer view without a context: an SDK stream's own code needs no current span."""

    __slots__ = ("_observer",)

    @property
    def context(self) -> otel_context.Context | None:
        return None

    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    @property
    def deadline(self) -> float | None:
        return self._observer.deadline

    def item(self, item: Any) -> None:
        self._observer.item(item)

    def done(self, exc: BaseException | None) -> BaseException | None:
        return self._observer.done(exc)

    def cancel(self) -> None:
        self._observer.cancel()


class _ManagerProxy:
    """Stands in for an anthropic ``MessageStreamManager``, whose request starts in ``__enter__``."""

    __slots__ = ("__weakref__", "_inner", "_observer")

    def __init__(self, inner: Any, observer: Observer) -> None:
        self._inner = inner
        self._observer = observer

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, MessageStreamManager) stays True
        return type(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _enter(self, stream: Any) -> Any:
        wrap_stream(stream, self._observer)
        return stream

    def __enter__(self) -> Any:
        # The request is sent here: make it a child of the attempt so provider spans merge.
        ctx = self._observer.context
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            stream = self._inner.__enter__()
        except BaseException as exc:
            self._observer.done(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        return self._enter(stream)

    def __exit__(self, *exc_info: object) -> Any:
        return self._inner.__exit__(*exc_info)

    async def __aenter__(self) -> Any:
        ctx = self._observer.context
        token = otel_context.attach(ctx) if ctx is not None else None
        try:
            stream = await self._inner.__aenter__()
        except BaseException as exc:
            self._observer.done(exc)
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
        return self._enter(stream)

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self._inner.__aexit__(*exc_info)


def unwrap(proxy: Any) -> Any:
    """The SDK stream inside other instrumentations' proxies, or None when they hold none.

    Instrumenting the innermost stream's ``_iterator`` sees every item whichever proxy
    the caller iterates, and the caller keeps the proxies (and the other instrumentations).
    Proxies nest when two instrumentations (or one instrumented twice) wrap the same call.
    """
    current = proxy
    for _ in range(8):  # bounded: a proxy that wraps itself must not loop forever
        inner = None
        for attr in ("__wrapped__", "stream"):
            try:
                inner = getattr(current, attr, None)
            except Exception:
                continue
            if inner is not None and inner is not current:
                break
            inner = None
        if inner is None:
            return None
        kind = stream_kind(inner)
        if kind in (SDK_STREAM, SDK_ASYNC_STREAM):
            return inner
        if kind != WRAPPER:
            return None
        current = inner
    return None


def wrap_stream(obj: Any, observer: Observer, kind: int | None = None) -> Any:
    """Attach ``observer`` to a stream and return what the caller should get in its place."""
    if kind is None:
        kind = stream_kind(obj)
    if kind == GENERATOR:
        wrapped: Any = traced_generator(obj, observer)
        weakref.finalize(wrapped, observer.cancel)
        return wrapped
    if kind == ASYNC_GENERATOR:
        wrapped = traced_async_generator(obj, observer)
        weakref.finalize(wrapped, observer.cancel)
        return wrapped
    if kind == SDK_STREAM:
        _patch_sync(obj, observer)
        return obj
    if kind == SDK_ASYNC_STREAM:
        _patch_async(obj, observer)
        return obj
    if kind == MANAGER:
        proxy = _ManagerProxy(obj, observer)
        weakref.finalize(proxy, observer.cancel)
        return proxy
    if kind == WRAPPER:
        inner = unwrap(obj)
        if inner is not None:
            wrap_stream(inner, observer)
        else:
            observer.done(None)
        return obj
    observer.done(None)
    return obj
