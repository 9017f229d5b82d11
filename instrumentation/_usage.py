"""Usage, model and response facts from what a model call returned, without importing SDKs.

Recognised shapes (objects of the SDKs or plain dicts with the same fields):
OpenAI Chat Completions and its chunks, OpenAI Responses and its stream events,
Anthropic Messages and its stream events, Google GenAI ``GenerateContentResponse``,
LiteLLM ``ModelResponse`` (OpenAI-shaped). Finish reasons are put in the conventions'
words by :mod:`llmlens._finish`, the table the collector uses too. Tokens are normalised to the GenAI
conventions: input includes cached input (Anthropic reports cache reads and writes on
top of ``input_tokens``, so they are added in), output includes reasoning (Google reports
thoughts apart from candidates, so they are added in).

The extractor for a response class is chosen once per class and cached, so the hot path
is a dict lookup and a handful of ``getattr`` calls; the provider is cached per class only
where the class implies it (an SDK's own), never for a gateway's shared response class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from llmlens import semconv as sc
from llmlens._finish import finish_reason

__all__ = ["StreamUsage", "extract", "response_text"]

Attrs = dict[str, Any]

_PROVIDER_BY_MODULE: Final = {"openai": "openai", "anthropic": "anthropic", "google": "gcp.gen_ai",
                              "vertexai": "gcp.vertex_ai", "mistralai": "mistral_ai", "groq": "groq",
                              "cohere": "cohere"}


class _DictView:
    """Attribute access over a dict (and its nested dicts), so one extractor serves both.

    SDK objects are the common case and are read with bare ``getattr``; dicts pay for
    this wrapper instead of every object paying for a dict check on every field.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, key: str) -> Any:
        value = self._data.get(key)
        if type(value) is dict:
            return _DictView(value)
        if type(value) is list:
            return [_DictView(v) if type(v) is dict else v for v in value]
        return value


def _view(obj: Any) -> Any:
    return _DictView(obj) if type(obj) is dict else obj


def _g(obj: Any, key: str) -> Any:
    return getattr(obj, key, None)


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


# One response class serves every provider behind a gateway library (LiteLLM's
# ModelResponse): its provider is read from each response, never cached per class.
_PER_RESPONSE: Final = object()


def _provider_of(klass: type) -> Any:
    """The provider a response class implies, or ``_PER_RESPONSE`` when each response says."""
    module = klass.__module__.partition(".")[0]
    if module == "litellm":
        return _PER_RESPONSE
    return _PROVIDER_BY_MODULE.get(module)


def _litellm_provider(obj: Any) -> str | None:
    hidden = getattr(obj, "_hidden_params", None)
    provider = hidden.get("custom_llm_provider") if isinstance(hidden, dict) else None
    return provider if isinstance(provider, str) else None


# --- per-shape extractors --------------------------------------------------------------------
# Written out field by field, without helpers: this runs on every call (see the benchmark).
def _openai_usage(usage: Any, attrs: Attrs) -> None:
    value = getattr(usage, "prompt_tokens", None)
    if type(value) is int:
        attrs[sc.USAGE_INPUT_TOKENS] = value
    value = getattr(usage, "completion_tokens", None)
    if type(value) is int:
        attrs[sc.USAGE_OUTPUT_TOKENS] = value
    value = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    if type(value) is int:
        attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] = value
    value = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
    if type(value) is int:
        attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] = value
    # LiteLLM passes Anthropic's cache writes through; its prompt_tokens already include them.
    value = getattr(usage, "cache_creation_input_tokens", None)
    if type(value) is int:
        attrs[sc.USAGE_CACHE_WRITE_INPUT_TOKENS] = value


def _chat(obj: Any) -> Attrs:
    attrs: Attrs = {}
    value = getattr(obj, "model", None)
    if value is not None:
        attrs[sc.RESPONSE_MODEL] = value
    value = getattr(obj, "id", None)
    if value is not None:
        attrs[sc.RESPONSE_ID] = value
    choices = getattr(obj, "choices", None)
    if choices:
        reasons = [finish_reason(r) for r in [getattr(c, "finish_reason", None) for c in choices] if type(r) is str]
        if reasons:
            attrs[sc.RESPONSE_FINISH_REASONS] = reasons
    usage = getattr(obj, "usage", None)
    if usage is not None:
        _openai_usage(usage, attrs)
    return attrs


def _put(attrs: Attrs, key: str, value: Any) -> None:
    if value is not None:
        attrs[key] = value


def _responses_usage(usage: Any, attrs: Attrs) -> None:
    if usage is None:
        return
    _put(attrs, sc.USAGE_INPUT_TOKENS, _int(_g(usage, "input_tokens")))
    _put(attrs, sc.USAGE_OUTPUT_TOKENS, _int(_g(usage, "output_tokens")))
    _put(attrs, sc.USAGE_CACHE_READ_INPUT_TOKENS, _int(_g(_g(usage, "input_tokens_details"), "cached_tokens")))
    _put(attrs, sc.USAGE_REASONING_OUTPUT_TOKENS,
         _int(_g(_g(usage, "output_tokens_details"), "reasoning_tokens")))


def _responses(obj: Any) -> Attrs:
    attrs: Attrs = {}
    _put(attrs, sc.RESPONSE_MODEL, _g(obj, "model"))
    _put(attrs, sc.RESPONSE_ID, _g(obj, "id"))
    reason = _g(_g(obj, "incomplete_details"), "reason") or _g(obj, "status")
    if isinstance(reason, str):
        attrs[sc.RESPONSE_FINISH_REASONS] = [finish_reason(reason)]
    _responses_usage(_g(obj, "usage"), attrs)
    return attrs


def _anthropic_usage(usage: Any, attrs: Attrs) -> None:
    if usage is None:
        return
    read = _int(_g(usage, "cache_read_input_tokens"))
    write = _int(_g(usage, "cache_creation_input_tokens"))
    uncached = _int(_g(usage, "input_tokens"))
    if uncached is not None:
        attrs[sc.USAGE_INPUT_TOKENS] = uncached + (read or 0) + (write or 0)
    _put(attrs, sc.USAGE_OUTPUT_TOKENS, _int(_g(usage, "output_tokens")))
    _put(attrs, sc.USAGE_CACHE_READ_INPUT_TOKENS, read)
    _put(attrs, sc.USAGE_CACHE_WRITE_INPUT_TOKENS, write)


def _anthropic(obj: Any) -> Attrs:
    attrs: Attrs = {}
    _put(attrs, sc.RESPONSE_MODEL, _g(obj, "model"))
    _put(attrs, sc.RESPONSE_ID, _g(obj, "id"))
    reason = _g(obj, "stop_reason")
    if isinstance(reason, str):
        attrs[sc.RESPONSE_FINISH_REASONS] = [finish_reason(reason)]
    _anthropic_usage(_g(obj, "usage"), attrs)
    return attrs


def _google(obj: Any) -> Attrs:
    attrs: Attrs = {}
    _put(attrs, sc.RESPONSE_MODEL, _g(obj, "model_version") or _g(obj, "modelVersion"))
    _put(attrs, sc.RESPONSE_ID, _g(obj, "response_id") or _g(obj, "responseId"))
    reasons = []
    for candidate in _g(obj, "candidates") or ():
        reason = _g(candidate, "finish_reason") or _g(candidate, "finishReason")
        if reason is not None:
            reasons.append(finish_reason(reason))
    if reasons:
        attrs[sc.RESPONSE_FINISH_REASONS] = reasons
    usage = _g(obj, "usage_metadata") or _g(obj, "usageMetadata")
    if usage is not None:
        prompt = _int(_g(usage, "prompt_token_count") or _g(usage, "promptTokenCount"))
        candidates = _int(_g(usage, "candidates_token_count") or _g(usage, "candidatesTokenCount"))
        thoughts = _int(_g(usage, "thoughts_token_count") or _g(usage, "thoughtsTokenCount"))
        cached = _int(_g(usage, "cached_content_token_count") or _g(usage, "cachedContentTokenCount"))
        _put(attrs, sc.USAGE_INPUT_TOKENS, prompt)
        if candidates is not None or thoughts is not None:
            attrs[sc.USAGE_OUTPUT_TOKENS] = (candidates or 0) + (thoughts or 0)
        _put(attrs, sc.USAGE_REASONING_OUTPUT_TOKENS, thoughts)
        _put(attrs, sc.USAGE_CACHE_READ_INPUT_TOKENS, cached)
    return attrs


def _nothing(obj: Any) -> Attrs:
    return {}


Extractor = Callable[[Any], Attrs]


def _kind(obj: Any) -> Extractor:
    marker = _g(obj, "object")
    if marker in ("chat.completion", "chat.completion.chunk"):
        return _chat
    if marker == "response":
        return _responses
    kind = _g(obj, "type")
    if kind == "message":
        return _anthropic
    if _g(obj, "usage_metadata") is not None or _g(obj, "usageMetadata") is not None or (
            _g(obj, "candidates") is not None and type(obj).__module__.startswith("google")):
        return _google
    usage = _g(obj, "usage")
    if usage is not None:
        if _g(usage, "prompt_tokens") is not None:
            return _chat
        if _g(usage, "cache_read_input_tokens") is not None or _g(usage, "cache_creation_input_tokens") is not None:
            return _anthropic
        if _g(usage, "input_tokens") is not None:
            return _responses if _g(obj, "output") is not None else _anthropic
    return _nothing


_BY_TYPE: dict[type, tuple[Extractor, Any]] = {}
_SCALARS: Final = (str, bytes, int, float, bool, type(None), list, tuple)


def extract(obj: Any) -> Attrs:
    """GenAI attributes (model, id, finish reasons, tokens, provider) of a response.

    >>> extract({"object": "chat.completion", "model": "gpt-4o-mini",
    ...          "usage": {"prompt_tokens": 10, "completion_tokens": 3}})[sc.USAGE_INPUT_TOKENS]
    10
    """
    klass = type(obj)
    if klass is dict:
        view = _DictView(obj)
        return _kind(view)(view)
    if klass in _SCALARS:
        return {}
    cached = _BY_TYPE.get(klass)
    if cached is None:
        # One class, one shape: SDK response classes never change what they are.
        cached = (_kind(obj), _provider_of(klass))
        if len(_BY_TYPE) < 512:
            _BY_TYPE[klass] = cached
    attrs = cached[0](obj)
    provider = cached[1]
    if provider is _PER_RESPONSE:
        provider = _litellm_provider(obj)
    if provider is not None:
        attrs[sc.PROVIDER_NAME] = provider
    return attrs


# --- text, for validation and (redacted) content capture ------------------------------------
_MAX_REQUEST_BODY: Final = 1 << 20


def failed_request_model(exc: BaseException) -> str | None:
    """The model a failed SDK call asked for, read from the request the exception carries.

    A call that fails (429, 5xx, timeout) has no response to name its model, and without a
    model its row could not be priced, not even as the zero a refused request costs. The
    openai and anthropic SDK errors carry their ``httpx``/``httpx2`` request; only its
    JSON body's ``model`` is read, and only on failure.
    """
    request = getattr(exc, "request", None)
    if request is None:
        request = getattr(getattr(exc, "response", None), "request", None)
    try:
        body = getattr(request, "content", None)
    except Exception:  # a streamed request body that was not read
        return None
    if not isinstance(body, (bytes, bytearray)) or not body.startswith(b"{") or len(body) > _MAX_REQUEST_BODY:
        return None
    try:
        model = json.loads(body).get("model")
    except (ValueError, AttributeError):
        return None
    return model if isinstance(model, str) and model else None


def response_text(obj: Any) -> str | None:
    """The text the model answered with, or None when the shape is unknown."""
    if isinstance(obj, str):
        return obj
    obj = _view(obj)
    choices = _g(obj, "choices")
    if choices:
        message = _g(choices[0], "message")
        content = _g(message, "content")
        return content if isinstance(content, str) else None
    if _g(obj, "object") == "response":
        text = _g(obj, "output_text")
        if isinstance(text, str):
            return text
        return _join_parts(_g(item, "content") for item in _g(obj, "output") or ())
    content = _g(obj, "content")
    if isinstance(content, list):
        return _join_parts([content])
    candidates = _g(obj, "candidates")
    if candidates:
        text = _g(obj, "text") if type(obj) is not _DictView else None
        if isinstance(text, str):
            return text
        return _join_parts(_g(_g(c, "content"), "parts") for c in candidates[:1])
    return None


def _join_parts(groups: Any) -> str | None:
    texts = [t for group in groups for t in (_g(p, "text") for p in group or ()) if isinstance(t, str)]
    return "".join(texts) if texts else None


# --- streams ---------------------------------------------------------------------------------
class StreamUsage:
    """Accumulates usage and response facts over the items of a stream.

    OpenAI sends usage in a final chunk (with ``stream_options={"include_usage": True}``);
    Anthropic splits it between ``message_start`` (input and cache) and ``message_delta``
    (output, cumulative); Responses and Google send it in the completed event or last chunk.
    Text is kept only when ``keep_text`` (validation or content capture asked for it).
    """

    __slots__ = ("_anthropic", "attrs", "keep_text", "texts")

    def __init__(self, keep_text: bool = False) -> None:
        self.attrs: Attrs = {}
        self.texts: list[str] | None = [] if keep_text else None
        self.keep_text = keep_text
        self._anthropic: dict[str, Any] | None = None

    def add(self, item: Any) -> None:
        if isinstance(item, str):
            if self.texts is not None:
                self.texts.append(item)
            return
        item = _view(item)
        marker = _g(item, "object")
        if marker == "chat.completion.chunk":
            self._chat_chunk(item)
            return
        kind = _g(item, "type")
        if isinstance(kind, str):
            self._event(kind, item)
            return
        if _g(item, "candidates") is not None or _g(item, "usage_metadata") is not None:
            self.attrs.update(_google(item))
            if self.texts is not None:
                text = response_text(item)
                if text:
                    self.texts.append(text)

    def _chat_chunk(self, chunk: Any) -> None:
        attrs = self.attrs
        if sc.RESPONSE_MODEL not in attrs:
            _put(attrs, sc.RESPONSE_MODEL, _g(chunk, "model"))
            _put(attrs, sc.RESPONSE_ID, _g(chunk, "id"))
        for choice in _g(chunk, "choices") or ():
            reason = _g(choice, "finish_reason")
            if isinstance(reason, str):
                attrs[sc.RESPONSE_FINISH_REASONS] = [finish_reason(reason)]
            if self.texts is not None:
                text = _g(_g(choice, "delta"), "content")
                if isinstance(text, str):
                    self.texts.append(text)
        usage = _g(chunk, "usage")
        if usage is not None:
            _openai_usage(usage, attrs)

    def _event(self, kind: str, event: Any) -> None:
        if kind == "chunk":  # openai's ChatCompletionStream helper wraps each chunk
            chunk = _g(event, "chunk")
            if chunk is not None:
                self._chat_chunk(chunk)
        elif kind == "content_block_delta":
            if self.texts is not None:
                text = _g(_g(event, "delta"), "text")
                if isinstance(text, str):
                    self.texts.append(text)
        elif kind == "message_start":
            message = _g(event, "message")
            _put(self.attrs, sc.RESPONSE_MODEL, _g(message, "model"))
            _put(self.attrs, sc.RESPONSE_ID, _g(message, "id"))
            self._anthropic_usage(_g(message, "usage"))
        elif kind == "message_delta":
            reason = _g(_g(event, "delta"), "stop_reason")
            if isinstance(reason, str):
                self.attrs[sc.RESPONSE_FINISH_REASONS] = [finish_reason(reason)]
            self._anthropic_usage(_g(event, "usage"))
        elif kind == "response.output_text.delta":
            if self.texts is not None:
                text = _g(event, "delta")
                if isinstance(text, str):
                    self.texts.append(text)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self.attrs.update(_responses(_g(event, "response")))

    def _anthropic_usage(self, usage: Any) -> None:
        # message_delta's usage is cumulative; its nullable fields mean "unchanged".
        if usage is None:
            return
        raw = self._anthropic if self._anthropic is not None else {}
        self._anthropic = raw
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            value = _int(_g(usage, key))
            if value is not None:
                raw[key] = value
        _anthropic_usage(_DictView(raw), self.attrs)

    def text(self) -> str | None:
        return "".join(self.texts) if self.texts else None
