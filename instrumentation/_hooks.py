"""Hooks on ``httpx`` and ``httpx2``: where every provider request of the process is seen.

Every current provider SDK (openai, anthropic, google-genai, mistralai, groq, …) and the
frameworks above them (LangChain, instructor, LiteLLM, pydantic-ai) reach the model API
through one of these two libraries, sync or async. The hook sits on
``Client._send_single_request`` / ``AsyncClient._send_single_request``: below redirects,
auth and the SDKs' own retries (each retry is a request of its own), above the
transport, which apps replace (proxies, mounts, test transports), so a custom transport
is captured too. The method is patched on the class, so clients created before
:func:`install` are covered as well; a library imported later is patched by a small
import hook right after it loads.

The response's byte stream is replaced by a thin wrapper that hands every chunk to the
exchange as the application reads it (``read()``, ``iter_*``, SSE helpers all pull from
``response.stream``) and notices ``close()``: the application's bytes are the same
objects it would have read, nothing is buffered here.

Classes are recognised by the library they come from, never through ``isinstance``
against one HTTP library, and the private method is looked up defensively: a release
that renames it is left unpatched (and logged once) rather than broken.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
import types
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final

from llmlens import _capture

__all__ = ["install", "installed", "uninstall"]

logger = logging.getLogger("llmlens")

LIBRARIES: Final = ("httpx", "httpx2")
_METHOD: Final = "_send_single_request"
_MARK: Final = "__llmlens_original__"

_lock = threading.RLock()
_patched: dict[str, list[tuple[type, Any]]] = {}  # library -> [(class, original method)]
_finder: _PostImportFinder | None = None


class _Library(_capture.Library):
    """What the capture needs from one HTTP library: its stream base classes and decoders."""

    def __init__(self, module: types.ModuleType) -> None:
        self.name = module.__name__
        decoders = getattr(sys.modules.get(self.name + "._decoders"), "SUPPORTED_DECODERS", None)
        self.decoders: dict[str, Callable[[], Any]] = dict(decoders) if isinstance(decoders, dict) else {}
        self.sync_stream = _sync_stream_class(module.SyncByteStream)
        self.async_stream = _async_stream_class(module.AsyncByteStream)

    def decoder(self, encoding: str) -> Any:
        """A fresh decoder for a ``content-encoding`` value (the app's own stays untouched)."""
        names = [part.strip().lower() for part in encoding.split(",") if part.strip()]
        names = [name for name in names if name != "identity"]
        if not names:
            return None
        made = []
        for name in names:
            factory = self.decoders.get(name)
            if factory is None:
                raise LookupError(name)
            made.append(factory())
        return made[0] if len(made) == 1 else _Chain(made[::-1])  # decode in reverse order of encoding


class _Chain:
    __slots__ = ("_decoders",)

    def __init__(self, decoders: Sequence[Any]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> bytes:
        for decoder in self._decoders:
            data = decoder.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for decoder in self._decoders:
            data = decoder.decode(data) + decoder.flush()
        return data


def _sync_stream_class(base: type) -> type:
    class ObservedStream(base):  # type: ignore[misc]
        """The response's byte stream, seen chunk by chunk on its way to the application."""

        def __init__(self, inner: Any, exchange: _capture.Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        def __iter__(self) -> Iterator[bytes]:
            exchange = self._exchange
            try:
                for chunk in self._inner:
                    exchange.feed(chunk)
                    yield chunk
            except GeneratorExit:
                raise  # the reader stopped early: close() (or the collector) says so
            except BaseException as exc:
                exchange.failed(exc)
                raise
            exchange.eof()

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._exchange.closed()

        def __getattr__(self, name: str) -> Any:  # ``elapsed`` and whatever else the library reads
            inner = self.__dict__.get("_inner")
            if inner is None:
                raise AttributeError(name)
            return getattr(inner, name)

    return ObservedStream


def _async_stream_class(base: type) -> type:
    class AsyncObservedStream(base):  # type: ignore[misc]
        """The async twin of the sync stream wrapper."""

        def __init__(self, inner: Any, exchange: _capture.Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        async def __aiter__(self) -> AsyncIterator[bytes]:
            exchange = self._exchange
            try:
                async for chunk in self._inner:
                    exchange.feed(chunk)
                    yield chunk
            except GeneratorExit:
                raise
            except BaseException as exc:
                exchange.failed(exc)
                raise
            exchange.eof()

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._exchange.closed()

        def __getattr__(self, name: str) -> Any:
            inner = self.__dict__.get("_inner")
            if inner is None:
                raise AttributeError(name)
            return getattr(inner, name)

    return AsyncObservedStream


def _sync_hook(original: Callable[..., Any], library: _Library) -> Callable[..., Any]:
    begin = _capture.begin

    def _send_single_request(self: Any, request: Any) -> Any:
        exchange = begin(request, library)
        if exchange is None:
            return original(self, request)
        try:
            response = original(self, request)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        exchange.responded(response, library.sync_stream)
        return response

    setattr(_send_single_request, _MARK, original)
    return _send_single_request


def _async_hook(original: Callable[..., Any], library: _Library) -> Callable[..., Any]:
    begin = _capture.begin

    async def _send_single_request(self: Any, request: Any) -> Any:
        exchange = begin(request, library)
        if exchange is None:
            return await original(self, request)
        try:
            response = await original(self, request)
        except BaseException as exc:
            exchange.failed(exc)
            raise
        exchange.responded(response, library.async_stream)
        return response

    setattr(_send_single_request, _MARK, original)
    return _send_single_request


def _patch(module: types.ModuleType) -> None:
    name = module.__name__
    with _lock:
        if name in _patched:
            return
        try:
            library = _Library(module)
            targets = [(getattr(module, "Client", None), _sync_hook),
                       (getattr(module, "AsyncClient", None), _async_hook)]
            done: list[tuple[type, Any]] = []
            for klass, hook in targets:
                original = vars(klass).get(_METHOD) if isinstance(klass, type) else None
                if klass is None or not callable(original):
                    logger.warning("llmlens: %s.%s has no %s; its requests are not captured",
                                   name, getattr(klass, "__name__", "?"), _METHOD)
                    continue
                base = getattr(original, _MARK, original)  # never wrap our own hook twice
                setattr(klass, _METHOD, hook(base, library))
                done.append((klass, base))
            _patched[name] = done
        except Exception:
            logger.warning("llmlens: could not hook %s; its requests are not captured", name, exc_info=True)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Patches ``httpx``/``httpx2`` right after they are first imported."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in LIBRARIES or fullname in _patched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _PatchingLoader(spec.loader)
                return spec
            if spec is not None:
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        module: types.ModuleType | None = self._inner.create_module(spec)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        if _finder is not None:  # still wanted
            _patch(module)

    def __getattr__(self, name: str) -> Any:  # resource readers, get_code, is_package, ...
        return getattr(self._inner, name)


def install() -> None:
    """Hook every HTTP library already imported, and the others when they are. Idempotent."""
    global _finder
    with _lock:
        for name in LIBRARIES:
            module = sys.modules.get(name)
            if module is not None:
                _patch(module)
        if _finder is None and any(name not in _patched for name in LIBRARIES):
            _finder = _PostImportFinder()
            sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Put the libraries back as they were (``configure(capture="off")``, tests)."""
    global _finder
    with _lock:
        if _finder is not None:
            try:
                sys.meta_path.remove(_finder)
            except ValueError:
                pass
            _finder = None
        for done in _patched.values():
            for klass, original in done:
                setattr(klass, _METHOD, original)
        _patched.clear()


def installed() -> list[str]:
    """The libraries currently hooked."""
    return sorted(_patched)
