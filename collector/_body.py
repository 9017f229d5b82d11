"""Reading request bodies with a size cap, before and after decompression.

A sender can claim any ``Content-Length``, stream more than it claimed, or send a small
gzip body that inflates to gigabytes. Each is refused with 413 without ever holding more
than ``limit + 1`` bytes: the wire is read chunk by chunk, and decompression is streamed
with ``max_length`` so a bomb stops at the cap instead of being inflated in full.
"""

from __future__ import annotations

import zlib
from typing import Final

from starlette.requests import Request

from llmlens.collector import otlp

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_ZLIB_WBITS: Final = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS: Final = -zlib.MAX_WBITS


class BodyError(Exception):
    """A body refused before decoding; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.grpc_code = otlp.RESOURCE_EXHAUSTED if status == 413 else otlp.INVALID_ARGUMENT


def _too_large(limit: int, what: str) -> BodyError:
    return BodyError(413, f"{what} exceeds the collector's limit of {limit} bytes; send smaller batches")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, or :class:`BodyError` 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BodyError(400, "Content-Length is not a number") from None
        if size > limit:
            raise _too_large(limit, f"the body ({size} bytes)")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _too_large(limit, "the body")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decompress(body: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity, gzip or deflate) without inflating past ``limit``."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, _GZIP_WBITS, limit, "gzip")
    if encoding == "deflate":
        # RFC 9110 deflate is zlib-wrapped, but some clients send raw deflate streams.
        try:
            return _inflate(body, _ZLIB_WBITS, limit, "deflate")
        except BodyError as exc:
            if exc.status == 413:
                raise
            return _inflate(body, _RAW_DEFLATE_WBITS, limit, "deflate")
    raise BodyError(415, f"unsupported Content-Encoding {content_encoding!r} (use gzip or none)")


def _inflate(data: bytes, wbits: int, limit: int, name: str) -> bytes:
    out: list[bytes] = []
    produced = 0
    # gzip allows several members back to back; each needs a fresh decompressor.
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            chunk = inflater.decompress(data, limit + 1 - produced)
        except zlib.error as exc:
            raise BodyError(400, f"body is not valid {name} data: {exc}") from None
        produced += len(chunk)
        if produced > limit or inflater.unconsumed_tail:
            # Output stopped at max_length with input left over: it inflates past the cap.
            raise _too_large(limit, "the decompressed body")
        out.append(chunk)
        if not inflater.eof:
            raise BodyError(400, f"body is truncated {name} data")
        data = inflater.unused_data
        if not data or wbits != _GZIP_WBITS:
            break
    return out[0] if len(out) == 1 else b"".join(out)
