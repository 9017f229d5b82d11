"""Per-call overhead of ``@llmlens.observe`` against a raw OpenTelemetry SDK span.

Both sides run in the same process, on the same TracerProvider setup (BatchSpanProcessor
in front of an exporter that discards), and end up with the same attributes on the span:
the raw side sets them by hand, reading the usage off the response object directly, as
a careful hand-written instrumentation would. The decorated function has no retry policy
and no validation; capture is off. Target: at most 1.3x the raw span.

    python benchmarks/bench_overhead.py [--calls N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

import llmlens
from llmlens import semconv as sc


class DiscardingExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class _Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def _response() -> Any:
    # An OpenAI ChatCompletion's shape, as plain objects (no SDK import in the hot loop).
    usage = _Obj(prompt_tokens=120, completion_tokens=30,
                 prompt_tokens_details=_Obj(cached_tokens=64), completion_tokens_details=_Obj(reasoning_tokens=0))
    choice = _Obj(index=0, finish_reason="stop", message=_Obj(role="assistant", content="hi"))
    return _Obj(object="chat.completion", id="chatcmpl-1", model="gpt-4o-mini-2024-07-18", choices=[choice],
                usage=usage)


RESPONSE = _response()
START_ATTRS = {sc.OPERATION_NAME: "chat", sc.TASK: "extract_ticket", sc.PROMPT_VERSION: "ticket_prompt@3",
               sc.PROMPT_NAME: "ticket_prompt", sc.REQUEST_MODEL: "gpt-4o-mini", sc.PROVIDER_NAME: "openai",
               sc.SPAN_ROLE: sc.ROLE_ATTEMPT, sc.ATTEMPT: 1, sc.MAX_ATTEMPTS: 1, sc.FINAL: True}


def make_raw(tracer: trace.Tracer) -> Callable[[], Any]:
    def call() -> Any:
        with tracer.start_as_current_span("extract_ticket", kind=SpanKind.CLIENT, attributes=START_ATTRS) as span:
            result = RESPONSE
            usage = result.usage
            span.set_attributes({
                sc.RESPONSE_MODEL: result.model,
                sc.RESPONSE_ID: result.id,
                sc.RESPONSE_FINISH_REASONS: [c.finish_reason for c in result.choices],
                sc.USAGE_INPUT_TOKENS: usage.prompt_tokens,
                sc.USAGE_OUTPUT_TOKENS: usage.completion_tokens,
                sc.USAGE_CACHE_READ_INPUT_TOKENS: usage.prompt_tokens_details.cached_tokens,
                sc.USAGE_REASONING_OUTPUT_TOKENS: usage.completion_tokens_details.reasoning_tokens,
                sc.STATUS: "ok",
                sc.CALL_ID: format(span.get_span_context().span_id, "016x"),
            })
            return result

    return call


def make_observed() -> Callable[[], Any]:
    @llmlens.observe(task="extract_ticket", prompt_version="ticket_prompt@3", model="gpt-4o-mini",
                     provider="openai")
    def call() -> Any:
        return RESPONSE

    return call


def _check_same_attributes() -> None:
    """Same attribute names on both spans, or the comparison means nothing."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    make_raw(provider.get_tracer("bench"))()
    llmlens.configure(tracer_provider=provider, exporter=memory)
    make_observed()()
    llmlens.flush()
    by_scope = {s.instrumentation_scope.name: s for s in memory.get_finished_spans()}  # type: ignore[union-attr]
    raw_span, ours = by_scope["bench"], by_scope[sc.SCOPE_NAME]
    assert set(raw_span.attributes or {}) == set(ours.attributes or {}), (
        set(raw_span.attributes or {}) ^ set(ours.attributes or {}))
    llmlens.shutdown()


def _time(fn: Callable[[], Any], calls: int) -> float:
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    _check_same_attributes()
    raw_provider = TracerProvider()
    raw_exporter = DiscardingExporter()
    raw_provider.add_span_processor(BatchSpanProcessor(raw_exporter))
    raw = make_raw(raw_provider.get_tracer("bench"))

    ours_provider = TracerProvider()
    ours_exporter = DiscardingExporter()
    llmlens.configure(tracer_provider=ours_provider, exporter=ours_exporter)
    observed = make_observed()

    for fn in (raw, observed):  # warm up caches, the SDK's id generator, the processors' queues
        _time(fn, 2_000)

    raw_times, ours_times = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both sides alike
        raw_times.append(_time(raw, args.calls))
        ours_times.append(_time(observed, args.calls))
    # The fastest run of each is the one least disturbed by the rest of the machine.
    raw_us, ours_us = min(raw_times), min(ours_times)
    ratio = ours_us / raw_us
    median_ratio = statistics.median(ours_times) / statistics.median(raw_times)
    print(f"raw OpenTelemetry span : {raw_us:7.2f} µs/call (best of {args.repeats} x {args.calls})")
    print(f"@llmlens.observe       : {ours_us:7.2f} µs/call")
    print(f"ratio                  : {ratio:7.2f}x  (medians: {median_ratio:.2f}x; target <= 1.30x)")
    raw_provider.shutdown()
    llmlens.shutdown()
    total = 2_000 + args.repeats * args.calls
    # A full queue drops spans, which is cheaper than exporting them: both sides must keep up.
    print(f"spans exported         : raw {raw_exporter.count}/{total}, observe {ours_exporter.count}/{total}")
    return ratio


if __name__ == "__main__":
    main()
