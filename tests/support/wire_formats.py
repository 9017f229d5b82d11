"""What model providers send, as bytes: the wire formats the fake provider speaks.

Each function turns a :class:`Reply` (or an error) into the exact bytes a provider would
answer with, so tests can generate their own wire data, with or without a server::

    body = openai_chat_json(Reply("hi", input_tokens=30, cached_tokens=10), model="gpt-4o")
    frames = anthropic_stream(Reply("hi", thinking="hmm", cache_read_tokens=100), model="claude-x")
    b"".join(frames)  # the SSE stream as sent, one element per event

Token fields follow the GenAI conventions except where a provider's own report differs,
and each function writes them the way that provider does:

- ``input_tokens``: OpenAI, Gemini and the OpenAI-compatible providers count cached input
  inside it; Anthropic's ``input_tokens`` is the *uncached* part, with
  ``cache_read_tokens`` and ``cache_write_tokens`` reported on top.
- ``output_tokens`` includes ``reasoning_tokens``. Gemini reports thoughts apart from the
  candidates, so its ``candidatesTokenCount`` is ``output_tokens - reasoning_tokens``.
- ``cached_tokens``: cache reads of OpenAI (``prompt_tokens_details.cached_tokens``,
  ``input_tokens_details.cached_tokens``), DeepSeek (``prompt_cache_hit_tokens``) and
  Gemini (``cachedContentTokenCount``).

Streams are lists of frames, one per event as the provider writes it. Chat Completions
streams come in dialects (:attr:`Reply.flavor`): ``openai`` (usage in an extra last chunk
with no choices, only when ``stream_options.include_usage`` is set), ``groq`` (usage only
in the finish chunk's ``x_groq.usage``), ``mistral`` (usage always on the finish chunk),
``deepseek`` (``reasoning_content`` deltas, ``prompt_cache_hit_tokens``, usage on the
finish chunk when asked).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Reply", "anthropic_json", "anthropic_stream", "completions_json", "completions_stream",
    "embeddings_json", "error_json", "gemini_json", "gemini_stream", "openai_chat_json",
    "openai_chat_stream", "responses_json", "responses_stream", "sse",
]


@dataclass
class Reply:
    """A successful answer. Token counts are per provider semantics (see the module docstring)."""

    text: str = "Hello from the fake provider."
    input_tokens: int = 12  # OpenAI: prompt_tokens (cached included); Anthropic: uncached input only
    output_tokens: int = 5  # reasoning included
    cached_tokens: int = 0  # OpenAI / DeepSeek / Gemini cache reads (inside input_tokens)
    reasoning_tokens: int = 0  # OpenAI reasoning_tokens, Gemini thoughtsTokenCount
    cache_read_tokens: int = 0  # Anthropic cache_read_input_tokens (on top of input_tokens)
    cache_write_tokens: int = 0  # Anthropic cache_creation_input_tokens (on top of input_tokens)
    model: str | None = None  # default: the requested model
    delay: float = 0.0  # seconds before the response starts
    chunk_delay: float = 0.0  # seconds between streamed events
    finish_reason: str | None = None  # default "stop" / "end_turn" / "STOP" ("tool_calls"... with tools)
    thinking: str | None = None  # Anthropic thinking block, Gemini thought part, DeepSeek reasoning_content
    tool_calls: Sequence[tuple[str, dict[str, Any]]] = ()  # (name, arguments) the model calls
    flavor: str = "openai"  # Chat Completions dialect: "openai", "groq", "mistral", "deepseek"
    usage_chunk: bool | None = None  # chat streams: send usage? None = as stream_options.include_usage asks
    stream_error: str | None = None  # an error type sent mid-stream instead of the stream's ending events
    stop_after: int | None = None  # stream: frames sent before the connection drops (JSON: half the body)
    hang_after: int | None = None  # stream: frames sent before the server stalls until the client leaves
    gzip: bool = False  # gzip the body when the request accepts it (real providers do for JSON)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    response_id: str | None = None  # default a fixed fake id per API
    embedding_size: int | None = None  # floats per embedding; default the request's "dimensions" or 8


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sse(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    """One server-sent event: an optional ``event:`` line and one ``data:`` line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}{newline}" if event else ""
    return f"{prefix}data: {text}{newline}{newline}".encode()


def _pieces(text: str) -> list[str]:
    """Split into word-sized deltas, as providers stream them."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _args_pieces(arguments: dict[str, Any]) -> list[str]:
    text = json.dumps(arguments)
    return [text[i:i + 8] for i in range(0, len(text), 8)] or [""]


# --- OpenAI Chat Completions and the OpenAI-compatible providers ---------------------------
def _chat_usage(reply: Reply) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": reply.input_tokens, "completion_tokens": reply.output_tokens,
                             "total_tokens": reply.input_tokens + reply.output_tokens}
    if reply.flavor == "deepseek":
        usage["prompt_cache_hit_tokens"] = reply.cached_tokens
        usage["prompt_cache_miss_tokens"] = reply.input_tokens - reply.cached_tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    elif reply.flavor == "openai":
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cached_tokens, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0}
    return usage


def _chat_finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _openai_tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"id": f"call_fake{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(reply.tool_calls)]


def openai_chat_json(reply: Reply, model: str) -> bytes:
    """A ``chat.completion`` object (``POST /v1/chat/completions``)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = _openai_tool_calls(reply)
    if reply.thinking is not None and reply.flavor == "deepseek":
        message["reasoning_content"] = reply.thinking
    return _dumps({"id": reply.response_id or "chatcmpl-fake", "object": "chat.completion",
                   "created": int(time.time()), "model": model,
                   "choices": [{"index": 0, "message": message, "logprobs": None,
                                "finish_reason": _chat_finish(reply)}],
                   "usage": _chat_usage(reply)})


def openai_chat_stream(reply: Reply, model: str, include_usage: bool = False) -> list[bytes]:
    """``chat.completion.chunk`` events ending in ``data: [DONE]``, in ``reply.flavor``'s dialect."""
    flavor = reply.flavor
    send_usage = include_usage if reply.usage_chunk is None else reply.usage_chunk
    base: dict[str, Any] = {"id": reply.response_id or "chatcmpl-fake", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model}
    if flavor == "openai" and send_usage:
        base["usage"] = None  # OpenAI writes "usage": null on every chunk once usage is asked for

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}], **extra})

    frames = [chunk({"role": "assistant", "content": ""},
                    **({"x_groq": {"id": "req_fake"}} if flavor == "groq" else {}))]
    if reply.thinking is not None and flavor == "deepseek":
        frames += [chunk({"content": None, "reasoning_content": p}) for p in _pieces(reply.thinking)]
    if reply.text:
        frames += [chunk({"content": p}) for p in _pieces(reply.text)]
    for i, (name, args) in enumerate(reply.tool_calls):
        frames.append(chunk({"tool_calls": [{"index": i, "id": f"call_fake{i}", "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        frames += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in _args_pieces(args)]
    if reply.stream_error:
        frames.append(sse({"error": {"message": "scripted stream failure", "type": reply.stream_error,
                                     "param": None, "code": None}}))
        return frames
    usage = _chat_usage(reply)
    if flavor == "groq":
        frames.append(chunk({}, _chat_finish(reply), x_groq={"id": "req_fake", "usage": {**usage, "queue_time": 0.01}}))
    elif flavor == "mistral" or (flavor == "deepseek" and send_usage):
        frames.append(chunk({}, _chat_finish(reply), usage=usage))
    else:
        frames.append(chunk({}, _chat_finish(reply)))
        if send_usage and flavor == "openai":
            frames.append(sse({**base, "choices": [], "usage": usage}))
    frames.append(sse("[DONE]"))
    return frames


def completions_json(reply: Reply, model: str) -> bytes:
    """A legacy ``text_completion`` object (``POST /v1/completions``)."""
    return _dumps({"id": reply.response_id or "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                   "model": model, "choices": [{"text": reply.text, "index": 0, "logprobs": None,
                                                "finish_reason": reply.finish_reason or "stop"}],
                   "usage": _chat_usage(reply)})


def completions_stream(reply: Reply, model: str, include_usage: bool = False) -> list[bytes]:
    """Legacy completion chunks (``object: text_completion``) ending in ``[DONE]``."""
    base = {"id": reply.response_id or "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model}
    frames = [sse({**base, "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]})
              for p in _pieces(reply.text)]
    frames.append(sse({**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                            "finish_reason": reply.finish_reason or "stop"}]}))
    if include_usage if reply.usage_chunk is None else reply.usage_chunk:
        frames.append(sse({**base, "choices": [], "usage": _chat_usage(reply)}))
    frames.append(sse("[DONE]"))
    return frames


def embeddings_json(reply: Reply, model: str, inputs: int = 1, size: int | None = None) -> bytes:
    """An embeddings list (``POST /v1/embeddings``): usage has prompt and total tokens only."""
    size = reply.embedding_size or size or 8
    vector = [round(((i * 7919) % 2000) / 1000 - 1, 9) for i in range(size)]
    return _dumps({"object": "list",
                   "data": [{"object": "embedding", "index": n, "embedding": vector} for n in range(inputs)],
                   "model": model, "usage": {"prompt_tokens": reply.input_tokens, "total_tokens": reply.input_tokens}})


# --- OpenAI Responses -----------------------------------------------------------------------
_INCOMPLETE = frozenset({"max_output_tokens", "content_filter"})


def _response(reply: Reply, model: str, status: str, output: list[dict[str, Any]] | None,
              error: dict[str, Any] | None = None) -> dict[str, Any]:
    usage = None if output is None else {
        "input_tokens": reply.input_tokens, "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.output_tokens, "output_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
        "total_tokens": reply.input_tokens + reply.output_tokens}
    incomplete = {"reason": reply.finish_reason} if status == "incomplete" else None
    return {"id": reply.response_id or "resp_fake", "object": "response", "created_at": int(time.time()),
            "status": status, "error": error, "incomplete_details": incomplete, "instructions": None,
            "model": model, "output": output or [], "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": [], "metadata": {}, "usage": usage}


def _responses_output(reply: Reply, status: str) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reply.reasoning_tokens or reply.thinking is not None:
        output.append({"type": "reasoning", "id": "rs_fake", "summary": []})
    if reply.text:
        output.append({"type": "message", "id": "msg_fake", "status": status, "role": "assistant",
                       "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
    for i, (name, args) in enumerate(reply.tool_calls):
        output.append({"type": "function_call", "id": f"fc_fake{i}", "call_id": f"call_fake{i}", "name": name,
                       "arguments": json.dumps(args), "status": "completed"})
    return output


def _responses_status(reply: Reply) -> str:
    return "incomplete" if reply.finish_reason in _INCOMPLETE else "completed"


def responses_json(reply: Reply, model: str) -> bytes:
    """A ``response`` object (``POST /v1/responses``); ``incomplete`` when cut by max_output_tokens."""
    status = _responses_status(reply)
    return _dumps(_response(reply, model, status, _responses_output(reply, status)))


def responses_stream(reply: Reply, model: str) -> list[bytes]:
    """``response.created`` ... ``response.output_text.delta`` ... ``response.completed``/``incomplete``.

    With :attr:`Reply.stream_error` the stream ends in ``response.failed`` instead.
    """
    seq = iter(range(10_000))

    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **payload}, kind)

    frames = [event("response.created", response=_response(reply, model, "in_progress", None)),
              event("response.in_progress", response=_response(reply, model, "in_progress", None))]
    status = _responses_status(reply)
    where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    if reply.text:
        frames.append(event("response.output_item.added", output_index=0, item={
            "type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}))
        frames.append(event("response.content_part.added", **where,
                            part={"type": "output_text", "text": "", "annotations": []}))
        frames += [event("response.output_text.delta", **where, delta=p, logprobs=[]) for p in _pieces(reply.text)]
        frames.append(event("response.output_text.done", **where, text=reply.text, logprobs=[]))
        frames.append(event("response.content_part.done", **where,
                            part={"type": "output_text", "text": reply.text, "annotations": []}))
    for i, (name, args) in enumerate(reply.tool_calls):
        item = {"type": "function_call", "id": f"fc_fake{i}", "call_id": f"call_fake{i}", "name": name,
                "arguments": "", "status": "in_progress"}
        frames.append(event("response.output_item.added", output_index=i + 1, item=item))
        frames += [event("response.function_call_arguments.delta", item_id=f"fc_fake{i}", output_index=i + 1,
                         delta=p) for p in _args_pieces(args)]
    if reply.stream_error:
        failed = _response(reply, model, "failed", [],
                           {"code": reply.stream_error, "message": "scripted stream failure"})
        frames.append(event("response.failed", response=failed))
        return frames
    output = _responses_output(reply, status)
    for i, item in enumerate(output):
        frames.append(event("response.output_item.done", output_index=i, item=item))
    done = "response.incomplete" if status == "incomplete" else "response.completed"
    frames.append(event(done, response=_response(reply, model, status, output)))
    return frames


# --- Anthropic Messages ---------------------------------------------------------------------
def _anthropic_usage(reply: Reply) -> dict[str, Any]:
    return {"input_tokens": reply.input_tokens, "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens, "output_tokens": reply.output_tokens}


def _anthropic_stop(reply: Reply) -> str:
    return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")


def anthropic_json(reply: Reply, model: str) -> bytes:
    """A ``message`` object (``POST /v1/messages``)."""
    content: list[dict[str, Any]] = []
    if reply.thinking is not None:
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": "c2lnbmF0dXJl"})
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content += [{"type": "tool_use", "id": f"toolu_fake{i}", "name": name, "input": args}
                for i, (name, args) in enumerate(reply.tool_calls)]
    return _dumps({"id": reply.response_id or "msg_fake", "type": "message", "role": "assistant", "model": model,
                   "content": content, "stop_reason": _anthropic_stop(reply), "stop_sequence": None,
                   "usage": _anthropic_usage(reply)})


def anthropic_stream(reply: Reply, model: str) -> list[bytes]:
    """message_start, content_block_* (thinking, text, tool_use), ping, message_delta, message_stop.

    Usage as Anthropic splits it: input and cache tokens in ``message_start`` (output 1),
    the cumulative output in ``message_delta``. With :attr:`Reply.stream_error` an
    ``error`` event replaces message_delta and message_stop.
    """
    def event(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, **payload}, kind)

    start = {"id": reply.response_id or "msg_fake", "type": "message", "role": "assistant", "model": model,
             "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**_anthropic_usage(reply), "output_tokens": 1}}
    frames = [event("message_start", message=start)]
    index = 0
    if reply.thinking is not None:
        frames.append(event("content_block_start", index=index,
                            content_block={"type": "thinking", "thinking": "", "signature": ""}))
        frames.append(event("ping"))
        frames += [event("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": p})
                   for p in _pieces(reply.thinking)]
        frames.append(event("content_block_delta", index=index,
                            delta={"type": "signature_delta", "signature": "c2lnbmF0dXJl"}))
        frames.append(event("content_block_stop", index=index))
        index += 1
    if reply.text:
        frames.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        if index == 0:
            frames.append(event("ping"))
        frames += [event("content_block_delta", index=index, delta={"type": "text_delta", "text": p})
                   for p in _pieces(reply.text)]
        frames.append(event("content_block_stop", index=index))
        index += 1
    for i, (name, args) in enumerate(reply.tool_calls):
        frames.append(event("content_block_start", index=index, content_block={
            "type": "tool_use", "id": f"toolu_fake{i}", "name": name, "input": {}}))
        frames += [event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": p})
                   for p in _args_pieces(args)]
        frames.append(event("content_block_stop", index=index))
        index += 1
    if reply.stream_error:
        frames.append(event("error", error={"type": reply.stream_error, "message": "scripted stream failure"}))
        return frames
    frames.append(event("message_delta", delta={"stop_reason": _anthropic_stop(reply), "stop_sequence": None},
                        usage={"output_tokens": reply.output_tokens}))
    frames.append(event("message_stop"))
    return frames


# --- Google Gemini (API key and Vertex AI) --------------------------------------------------
def _gemini_usage(reply: Reply) -> dict[str, Any]:
    candidates = reply.output_tokens - reply.reasoning_tokens
    usage: dict[str, Any] = {"promptTokenCount": reply.input_tokens, "candidatesTokenCount": candidates,
                             "totalTokenCount": reply.input_tokens + reply.output_tokens}
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    if reply.cached_tokens:
        usage["cachedContentTokenCount"] = reply.cached_tokens
    return usage


def _gemini_chunk(parts: list[dict[str, Any]], model: str, reply: Reply, finish: str | None,
                  usage: dict[str, Any]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
            "responseId": reply.response_id or "fake-response-id"}


def _gemini_parts(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if reply.thinking is not None:
        parts.append({"text": reply.thinking, "thought": True})
    if reply.text:
        parts.append({"text": reply.text})
    parts += [{"functionCall": {"name": name, "args": args}} for name, args in reply.tool_calls]
    return parts


def gemini_json(reply: Reply, model: str) -> bytes:
    """A ``GenerateContentResponse`` (``:generateContent``), pretty-printed as Google sends it."""
    payload = _gemini_chunk(_gemini_parts(reply), model, reply, reply.finish_reason or "STOP", _gemini_usage(reply))
    return json.dumps(payload, indent=2).encode()


def gemini_stream(reply: Reply, model: str, sse_format: bool = True, vertex: bool = False) -> list[bytes]:
    """``:streamGenerateContent`` chunks: SSE with CRLF-separated events (``alt=sse``), or a JSON array.

    Intermediate chunks carry partial usage (Vertex: ``trafficType`` only; the API-key
    service: prompt and total so far); the last one has ``finishReason`` and the full usage.
    """
    partial = ({"trafficType": "ON_DEMAND"} if vertex
               else {"promptTokenCount": reply.input_tokens, "totalTokenCount": reply.input_tokens})
    chunks: list[dict[str, Any]] = []
    if reply.thinking is not None:
        chunks.append(_gemini_chunk([{"text": reply.thinking, "thought": True}], model, reply, None, partial))
    pieces = _pieces(reply.text) if reply.text else []
    calls = [{"functionCall": {"name": name, "args": args}} for name, args in reply.tool_calls]
    chunks += [_gemini_chunk([{"text": p}], model, reply, None, partial) for p in pieces[:-1]]
    final_parts = ([{"text": pieces[-1]}] if pieces else []) + calls
    if reply.stream_error:
        chunks.append({"error": {"code": 500, "message": "scripted stream failure", "status": reply.stream_error}})
    else:
        full = {**_gemini_usage(reply), **({"trafficType": "ON_DEMAND"} if vertex else {})}
        chunks.append(_gemini_chunk(final_parts, model, reply, reply.finish_reason or "STOP", full))
    if sse_format:
        return [sse(c, newline="\r\n") for c in chunks]
    texts = [json.dumps(c, indent=2) for c in chunks]
    return [("[" if i == 0 else ",\r\n").encode() + t.encode() for i, t in enumerate(texts)] + [b"]"]


# --- errors ---------------------------------------------------------------------------------
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error", 529: "overloaded_error"}
_OPENAI_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                 403: ("invalid_request_error", "unsupported_country_region_territory"),
                 404: ("invalid_request_error", "model_not_found"), 429: ("tokens", "rate_limit_exceeded"),
                 500: ("server_error", None), 503: ("server_error", None)}
_GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def error_json(api: str, status: int, message: str = "scripted failure", error_type: str | None = None,
               code: str | None = None) -> bytes:
    """An error body in the shape of ``api``: ``"openai"``, ``"anthropic"`` or ``"gemini"``.

    ``error_type``/``code`` override the provider's usual ones for that status.
    """
    if api == "anthropic":
        kind = error_type or _ANTHROPIC_TYPES.get(status, "api_error")
        return _dumps({"type": "error", "error": {"type": kind, "message": message}})
    if api == "gemini":
        return json.dumps({"error": {"code": status, "message": message,
                                     "status": error_type or _GOOGLE_STATUSES.get(status, "UNKNOWN")}},
                          indent=2).encode()
    default_type, default_code = _OPENAI_TYPES.get(status, ("server_error" if status >= 500 else
                                                            "invalid_request_error", None))
    return json.dumps({"error": {"message": message, "type": error_type or default_type, "param": None,
                                 "code": code if code is not None else default_code}}, indent=2).encode()
