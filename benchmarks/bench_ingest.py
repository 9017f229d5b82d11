"""Rows/s from the embedded exporter into SQLite, against raw sqlite3.executemany.

Both write the same rows into the same table with the same indexes, in the same run, so
the ratio is meaningful on a noisy machine. The exporter's figure includes everything it
does per span: reading the SDK span, normalize, pricing and the idempotent insert.

    python benchmarks/bench_ingest.py [--spans 50000] [--batch 512]

Target: exporter >= 0.5 x raw.
"""

from __future__ import annotations

import argparse
import gc
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmlens.collector.exporter import StoreSpanExporter
from llmlens.collector.ingest import Ingestor
from llmlens.collector.pricing import Pricer
from llmlens.collector.record import from_readable_span
from llmlens.collector.store import ROW_COLUMNS, open_store
from llmlens.collector.store._write import sqlite_params

MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"),
          ("gcp.gemini", "gemini-2.0-flash")]
TASKS = ["extract_ticket", "summarize_thread", "classify_intent", "draft_reply", "rag_answer"]


def make_spans(n: int) -> list[ReadableSpan]:
    rng = random.Random(1)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("llmlens")
    for i in range(n):
        prov, model = MODELS[i % len(MODELS)]
        inp = rng.randint(200, 6000)
        with tracer.start_as_current_span(f"chat {model}") as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": prov, "gen_ai.request.model": model,
                "gen_ai.response.model": model, "gen_ai.response.id": f"resp-{i}",
                "gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": rng.randint(10, 800),
                "gen_ai.usage.cache_read.input_tokens": inp // 4, "gen_ai.response.finish_reasons": ("stop",),
                "llmlens.task": TASKS[i % len(TASKS)], "gen_ai.prompt.version": "v3",
                "llmlens.span_role": "attempt", "llmlens.status": "ok", "llmlens.attempt": 1,
                "llmlens.final": True, "server.address": "api.example.com",
            })
    return list(memory.get_finished_spans())


def bench_raw(rows: list[dict[str, object]], path: Path, batch: int) -> float:
    open_store(f"sqlite:///{path}")  # same schema and indexes
    params = sqlite_params(rows)
    sql = (f"INSERT INTO llm_spans ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for i in range(0, len(params), batch):
        with conn:
            conn.executemany(sql, params[i:i + batch])
    elapsed = time.perf_counter() - start
    conn.close()
    return len(params) / elapsed


def bench_exporter(spans: list[ReadableSpan], path: Path, batch: int) -> float:
    exporter = StoreSpanExporter(f"sqlite:///{path}")
    exporter.export(spans[:1])  # open the store outside the timing
    rest = spans[1:]
    start = time.perf_counter()
    for i in range(0, len(rest), batch):
        exporter.export(rest[i:i + batch])
    elapsed = time.perf_counter() - start
    assert exporter.totals.stored == len(spans), exporter.totals
    return len(rest) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="best of N, alternating, against noise")
    args = parser.parse_args()
    spans = make_spans(args.spans)
    raw = ours = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        ingestor = Ingestor(open_store(f"sqlite:///{tmp}/rows.db"), Pricer())
        rows, _ = ingestor.rows([from_readable_span(s) for s in spans])
        # The fixtures are long-lived: keep the collector from rescanning them in either run.
        gc.collect()
        gc.freeze()
        for i in range(args.repeat):
            raw = max(raw, bench_raw(rows, Path(tmp) / f"raw{i}.db", args.batch))
            ours = max(ours, bench_exporter(spans, Path(tmp) / f"exporter{i}.db", args.batch))
    print(f"raw sqlite3.executemany : {raw:10,.0f} rows/s")
    print(f"llmlens exporter        : {ours:10,.0f} rows/s  (span -> normalize -> price -> insert)")
    print(f"ratio exporter / raw    : {ours / raw:10.2f}   (target >= 0.50)")


if __name__ == "__main__":
    main()
