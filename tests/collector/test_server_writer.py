"""The bulk writer on its own: order, coalescing, flush, close, and what a failure does."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from llmlens.collector._writer import BatchWriter, QueueFull
from llmlens.collector.otlp import OTLPDecodeError
from llmlens.collector.record import SpanRecord
from llmlens.collector.store import StoreUnavailable


@dataclass
class Result:
    received: int
    stored: int
    duplicates: int = 0
    not_llm: int = 0
    unpriced: int = 0


def _records(n: int, seed: int) -> list[SpanRecord]:
    return [
        SpanRecord(f"{seed:032x}", f"{i + 1:016x}", "chat", 1, 2, {"gen_ai.operation.name": "chat"})
        for i in range(n)
    ]


def _decode_by_name(body: bytes, media_type: str) -> object:
    from llmlens.collector.otlp import DecodedBatch

    if body == b"bad":
        raise OTLPDecodeError("body is not valid JSON")
    seed, n = body.decode().split(":")
    return DecodedBatch(records=_records(int(n), int(seed)))


def test_batches_that_queued_up_commit_together_in_order_and_flush_waits_for_them() -> None:
    gate, entered = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def ingest(records: Sequence[SpanRecord]) -> Result:
        entered.set()
        gate.wait(5)
        calls.append([r.trace_id[-1] for r in records])
        return Result(len(records), len(records))

    writer = BatchWriter(ingest, decode=_decode_by_name, max_batches=8)  # type: ignore[arg-type]
    writer.start()
    futures = [writer.submit(b"1:2", "application/json")]
    assert entered.wait(5)
    futures += [writer.submit(f"{seed}:2".encode(), "application/json") for seed in (2, 3)]
    assert writer.flush(0.1) is False  # the first commit is held
    gate.set()
    assert writer.flush(5) is True
    assert all(f.result(1).records == [] for f in futures)
    # The first batch alone (the writer was idle), then the two that queued behind it.
    assert calls[0] == ["1", "1"] and calls[1:] == [["2", "2", "3", "3"]]
    assert writer.metrics.counters.spans_stored == 6 and writer.metrics.counters.batches_committed == 2
    assert writer.close(5) is True


def test_a_body_that_does_not_decode_fails_alone() -> None:
    stored: list[SpanRecord] = []
    writer = BatchWriter(lambda r: (stored.extend(r), Result(len(r), len(r)))[1], decode=_decode_by_name)  # type: ignore[arg-type]
    writer.start()
    bad = writer.submit(b"bad", "application/json")
    good = writer.submit(b"7:3", "application/json")
    with pytest.raises(OTLPDecodeError):
        bad.result(5)
    assert good.result(5).rejected == 0
    assert len(stored) == 3
    writer.close(5)


def test_a_database_outage_fails_the_batch_and_refuses_new_ones_for_retry_after() -> None:
    def ingest(records: Sequence[SpanRecord]) -> Result:
        raise StoreUnavailable("connection refused")

    writer = BatchWriter(ingest, decode=_decode_by_name, retry_after=30)  # type: ignore[arg-type]
    writer.start()
    with pytest.raises(StoreUnavailable):
        writer.submit(b"1:1", "application/json").result(5)
    assert writer.database_up is False
    assert writer.refusal() == "the database is unavailable"
    with pytest.raises(StoreUnavailable):
        writer.submit(b"2:1", "application/json")
    assert writer.metrics.counters.spans_dropped == 1
    writer.close(5)


def test_close_commits_what_is_queued_and_then_refuses() -> None:
    gate, entered = threading.Event(), threading.Event()
    stored: list[SpanRecord] = []

    def ingest(records: Sequence[SpanRecord]) -> Result:
        entered.set()
        gate.wait(5)
        stored.extend(records)
        return Result(len(records), len(records))

    writer = BatchWriter(ingest, decode=_decode_by_name, max_batches=2)  # type: ignore[arg-type]
    writer.start()
    futures = [writer.submit(b"1:1", "application/json")]
    assert entered.wait(5)  # the writer holds the first; the queue has room for two more
    futures += [writer.submit(f"{seed}:1".encode(), "application/json") for seed in (2, 3)]
    with pytest.raises(QueueFull):
        writer.submit(b"4:1", "application/json")
    threading.Timer(0.2, gate.set).start()
    assert writer.close(5) is True
    assert [f.result(0).rejected for f in futures] == [0, 0, 0]
    assert len(stored) == 3
    with pytest.raises(QueueFull, match="shutting down"):
        writer.submit(b"5:1", "application/json")
