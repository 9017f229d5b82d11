"""The source matrix's shared parts: an app's tracer provider exporting to a collector, and row checks.

Each source test runs a real instrumentation as an application would, against the fake
provider, with the application's own ``TracerProvider`` exporting through the real OTLP
exporter into a running collector. The exporter sits behind a ``SimpleSpanProcessor``, so
every span is an export batch of its own and reaches the collector when it ends: a
request's span arrives before the workflow, chain or agent span that names it, which is
the order that makes the task come from a later batch.

:func:`check_rows` compares stored rows with what was asked of the fake provider. The
cost oracle is ``genai_prices.calc_price`` called here directly, on the tokens the test
scripted, not on what llmlens read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

__all__ = ["Expect", "app_provider", "check_rows", "oracle_cost"]


@contextmanager
def app_provider(collector: Any, service: str, *, grpc: bool = False) -> Iterator[TracerProvider]:
    """The application's tracer provider, exporting each span to ``collector`` as it ends."""
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter: Any = GrpcExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True, timeout=20)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=collector.traces_url, timeout=20)
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider
    finally:
        provider.shutdown()


@dataclass(frozen=True)
class Expect:
    """One expected row. Token counts follow the conventions (input includes cached input)."""

    model: str
    provider: str
    status: str = "ok"
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    streaming: bool = False
    ttft: bool = False  # the source records when the first chunk came
    reported_cost: bool = False  # the source computes a cost of its own
    failure_reason: str | None = None
    task: str | None = None


def oracle_cost(expect: Expect, when: datetime) -> float:
    """What genai-prices says the scripted tokens cost."""
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=expect.input_tokens or 0, cache_read_tokens=expect.cache_read or 0,
                  cache_write_tokens=expect.cache_write or 0, output_tokens=expect.output_tokens or 0)
    provider_id = {"gcp.gemini": "google"}.get(expect.provider, expect.provider)
    return float(calc_price(usage, expect.model, provider_id=provider_id, genai_request_timestamp=when).total_price)


def check_rows(rows: list[dict[str, Any]], expected: list[Expect]) -> None:
    """Rows (oldest first) against expectations, field by field, with readable failures."""
    assert len(rows) == len(expected), [(r["name"], r["status"], r["input_tokens"]) for r in rows]
    for n, (row, want) in enumerate(zip(rows, expected, strict=True)):
        failed = want.status != "ok"
        got = {
            "provider": row["provider"], "model": row["request_model"], "status": row["status"],
            "task": row["task"], "final first attempt": bool(row["final"]) and row["attempt"] == 1,
            "tokens": (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"] or 0,
                       row["cache_write_tokens"] or 0),
            "failure reason": (row["failure_reason"] if want.failure_reason or not failed
                               else bool(row["failure_reason"])),
            "streaming": row["streaming"],
            "ttft": row["time_to_first_token_ms"] is not None and row["time_to_first_token_ms"] > 0,
            "reported cost": row["reported_cost_usd"] is not None and row["reported_cost_usd"] >= 0,
        }
        wanted = {
            "provider": want.provider, "model": want.model, "status": want.status, "task": want.task,
            "final first attempt": True,
            "tokens": (want.input_tokens, want.output_tokens, want.cache_read or 0, want.cache_write or 0),
            "failure reason": want.failure_reason if want.failure_reason or not failed else True,
            "streaming": want.streaming, "ttft": want.ttft, "reported cost": want.reported_cost,
        }
        # Not a test module, so no assertion rewriting: the message names what differs.
        differ = {key: (got[key], wanted[key]) for key in wanted if got[key] != wanted[key]}
        assert not differ, f"row {n} ({row['name']}), (got, wanted): {differ}"
        if failed:
            assert row["cost_usd"] in (None, 0.0), f"row {n}: a refused request costs nothing"
        else:
            expected_cost = oracle_cost(want, row["start_time"])
            assert row["cost_usd"] == pytest.approx(expected_cost, rel=1e-9), f"row {n}: cost"
        if not want.ttft:
            assert row["time_to_first_token_ms"] is None, f"row {n}: the source records no TTFT"
