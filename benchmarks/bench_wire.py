"""CPU cost of reading the wire (``llmlens._wire``), per streamed chunk and per JSON answer.

The capture reads every byte an app receives from a model API, on the app's thread, so
this cost is added to every call. Each figure is printed next to a baseline measured in
the same run: ``json.loads`` of what is read (every chunk of a stream, the whole JSON
answer), which is roughly what the provider SDK itself spends decoding the same bytes.

    python benchmarks/bench_wire.py [--repeats R]

Wire data comes from the test suite's provider formats (tests/support/wire_formats.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import wire_formats as wf
from wire_formats import Reply

from llmlens._wire import ResponseReader, read_request

SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json"}


def _best(fns: tuple[Callable[[], object], Callable[[], object]], loops: int,
          repeats: int) -> tuple[float, float]:
    """Best mean seconds per call of each of two functions, measured in alternation so
    that a change in machine load affects both sides alike."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for side, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(loops):
                fn()
            best[side] = min(best[side], (time.perf_counter() - start) / loops)
    return best[0], best[1]


def _stream_case(name: str, host: str, path: str, request: bytes, frames: list[bytes], repeats: int) -> None:
    def capture() -> object:
        info = read_request("POST", host, 443, path, request)
        assert info is not None
        reader = ResponseReader(info, 200, SSE)
        for frame in frames:
            reader.feed(frame)
        return reader.result()

    def baseline() -> object:
        for frame in frames:
            for line in frame.split(b"\n"):
                if line.startswith(b"data: {"):
                    json.loads(line[6:])
        return None

    ours, base = _best((capture, baseline), max(10, 4000 // len(frames)), repeats)
    chunks = len(frames)
    print(f"{name:<44} {chunks:>5} chunks  {ours / chunks * 1e6:6.2f} µs/chunk  "
          f"(json.loads of each chunk: {base / chunks * 1e6:6.2f} µs/chunk, ratio {ours / base:4.2f}x)")


def _json_case(name: str, host: str, path: str, request: bytes, body: bytes, repeats: int,
               piece: int = 65536) -> None:
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)]

    def capture() -> object:
        info = read_request("POST", host, 443, path, request)
        assert info is not None
        reader = ResponseReader(info, 200, JSON)
        for p in pieces:
            reader.feed(p)
        return reader.result()

    def baseline() -> object:
        return json.loads(body)

    ours, base = _best((capture, baseline), max(3, min(5000, (20 << 20) // max(len(body), 1))), repeats)
    print(f"{name:<44} {len(body):>9,} B  {ours * 1e6:9.1f} µs/answer  "
          f"(json.loads: {base * 1e6:9.1f} µs, ratio {ours / base:4.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    repeats = args.repeats
    words = " ".join(f"w{i}" for i in range(198))  # + role chunk, finish chunk, usage chunk, [DONE]
    chat_request = json.dumps({"messages": [{"role": "user", "content": "hi " * 200}], "model": "gpt-4o-mini",
                               "stream": True, "stream_options": {"include_usage": True}}).encode()
    print("Streams (read_request + every chunk fed + result):")
    _stream_case("OpenAI chat, include_usage", "api.openai.com", "/v1/chat/completions", chat_request,
                 wf.openai_chat_stream(Reply(words, input_tokens=300, output_tokens=198, cached_tokens=128),
                                       "gpt-4o-mini", include_usage=True), repeats)
    _stream_case("Groq chat (usage in x_groq)", "api.groq.com", "/openai/v1/chat/completions", chat_request,
                 wf.openai_chat_stream(Reply(words, flavor="groq"), "llama-3.1-8b-instant"), repeats)
    _stream_case("Anthropic messages", "api.anthropic.com", "/v1/messages",
                 b'{"max_tokens":1024,"messages":[],"model":"claude-haiku-4-5","stream":true}',
                 wf.anthropic_stream(Reply(words, cache_read_tokens=1000), "claude-haiku-4-5"), repeats)
    _stream_case("OpenAI Responses", "api.openai.com", "/v1/responses",
                 b'{"input":"hi","model":"gpt-4o","stream":true}',
                 wf.responses_stream(Reply(words), "gpt-4o"), repeats)
    _stream_case("Gemini streamGenerateContent (SSE)", "generativelanguage.googleapis.com",
                 "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", b'{"contents":[]}',
                 wf.gemini_stream(Reply(words, reasoning_tokens=10, output_tokens=300), "gemini-2.5-flash"), repeats)
    _stream_case("Vertex streamGenerateContent (SSE)", "us-central1-aiplatform.googleapis.com",
                 "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash"
                 ":streamGenerateContent?alt=sse", b'{"contents":[]}',
                 wf.gemini_stream(Reply(words, reasoning_tokens=10, output_tokens=300), "gemini-2.5-flash",
                                  vertex=True), repeats)
    print("JSON answers (read_request + body fed in 64 KiB pieces + result):")
    _json_case("OpenAI chat completion", "api.openai.com", "/v1/chat/completions", chat_request,
               wf.openai_chat_json(Reply("a short answer " * 10, cached_tokens=64), "gpt-4o-mini"), repeats)
    _json_case("Anthropic message", "api.anthropic.com", "/v1/messages",
               b'{"max_tokens":1024,"messages":[],"model":"claude-haiku-4-5"}',
               wf.anthropic_json(Reply("a short answer " * 10), "claude-haiku-4-5"), repeats)
    _json_case("OpenAI embeddings, 1 x 1536", "api.openai.com", "/v1/embeddings",
               b'{"input":"x","model":"text-embedding-3-small"}',
               wf.embeddings_json(Reply(), "text-embedding-3-small", 1, 1536), repeats)
    _json_case("OpenAI embeddings, 500 x 1536 (past the parse limit)", "api.openai.com", "/v1/embeddings",
               b'{"input":["x"],"model":"text-embedding-3-small"}',
               wf.embeddings_json(Reply(), "text-embedding-3-small", 500, 1536), repeats)


if __name__ == "__main__":
    main()

