"""Dashboard page latency at production scale: every page's exact queries on 1M and 10M rows.

    python benchmarks/bench_dashboard.py [--rows 1000000 ...] [--db sqlite postgres]
                                         [--cache-dir DIR] [--pg-url URL] [--no-baseline] [--browser]

Builds a store of ``--rows`` provider requests over 30 days (6 tasks, 7 models, prompt
rollouts, retries, streaming, failures; ~33,000 calls a day at 1M) through the real write
path, ``Store.insert_rows``, so rollups are built as in production, and says how long that
took. Built stores are cached (SQLite files under ``--cache-dir``, PostgreSQL databases
named ``llmlens_bench_<rows>``) and re-runs skip building.

Then, for each page of the dashboard, it runs that page's exact set of
``llmlens.collector.queries`` calls (no Streamlit cache) for the last 24 hours, 7 days and
30 days, and prints the time; with the baseline (default), also the same page's queries as
they were before rollups (SQL over raw rows, ``raw_queries.py``) and the ratio. Targets:
<= 0.3 s a page at 1M rows, <= 1 s at 10M, on both databases. ``--browser`` also opens every
page of the running dashboard on the store in headless Chromium and prints the time until
it is fully drawn (target <= 1.5 s). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import raw_queries

from llmlens.collector import queries
from llmlens.collector.pricing import Pricer, row_cost
from llmlens.collector.queries import Filters
from llmlens.collector.store import ROW_COLUMNS, Store, dispose_engines, open_store

DAYS = 30
# task -> (models it calls, prompt versions, streamed?)
TASKS: dict[str, tuple[list[tuple[str, str]], list[str], bool]] = {
    "extract_ticket": ([("openai", "gpt-4o-mini"), ("openai", "gpt-4.1")], ["ticket@3", "ticket@4", "ticket@5"], False),
    "summarize_thread": ([("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-haiku-4-5")], ["sum@2"], True),
    "classify_intent": ([("openai", "gpt-4o-mini"), ("gcp.gemini", "gemini-2.0-flash")], ["intent@7"], False),
    "draft_reply": ([("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")], ["reply@1", "reply@2"], True),
    "rag_answer": ([("openai", "gpt-4.1"), ("self-hosted", "llama-3.1-70b")], ["rag@4"], True),
    "route_request": ([("gcp.gemini", "gemini-2.0-flash")], ["route@1"], False),
}
FAILURES = [("invalid_output", "ValidationError: priority"), ("timeout", "APITimeoutError"),
            ("provider_error", "InternalServerError"), ("client_error", "BadRequestError")]


def make_rows(n: int, end: datetime, seed: int = 42) -> list[dict[str, Any]]:
    """``n`` rows over the ``DAYS`` before ``end``: calls with retries, busier in working hours.

    Trace ids carry the seed, so slices made with different seeds never collide.
    """
    rng = random.Random(seed)
    price = _unit_prices()
    start = end - timedelta(days=DAYS)
    rows: list[dict[str, Any]] = []
    names = list(TASKS)
    i = 0
    while len(rows) < n:
        task = rng.choice(names)
        models, versions, streamed = TASKS[task]
        provider, model = rng.choice(models)
        version = rng.choice(versions)
        at = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
        if rng.random() < 0.4 and not 8 <= at.hour < 20:  # a quieter night
            moved = at.replace(hour=rng.randint(8, 19))
            at = moved if moved < end - timedelta(minutes=5) else at  # never into the future
        attempts = 1 + (rng.random() < 0.08) + (rng.random() < 0.02)
        call_id = f"{i:016x}"
        elapsed = 0.0
        for attempt in range(1, attempts + 1):
            final = attempt == attempts
            if not final:
                status, reason = "rate_limited", "RateLimitError"
            elif rng.random() < 0.06:
                status, reason = rng.choice(FAILURES)
            else:
                status, reason = "ok", None
            duration = math.exp(rng.gauss(6.5, 0.6)) if status != "timeout" else 30000.0
            inp, out = rng.randint(200, 6000), rng.randint(10, 900)
            row = dict.fromkeys(ROW_COLUMNS)
            row.update(
                trace_id=f"{seed:016x}{i:016x}", span_id=f"{i:08x}{attempt:08x}", service_name="support-bot",
                name=f"chat {model}", start_time=at + timedelta(milliseconds=elapsed), duration_ms=duration,
                time_to_first_token_ms=duration * rng.uniform(0.1, 0.4) if streamed and status == "ok" else None,
                task=task, operation="chat", provider=provider, request_model=model, response_model=model,
                prompt_name=version.split("@")[0], prompt_version=version, status=status, failure_reason=reason,
                input_tokens=inp, output_tokens=out, cache_read_tokens=inp // 4, cache_write_tokens=0,
                reasoning_tokens=0, call_id=call_id, attempt=attempt, max_attempts=3, final=final,
                call_duration_ms=elapsed + duration if final else None, streaming=streamed, finish_reason="stop",
                attributes={"gen_ai.response.id": f"resp-{i}-{attempt}"},
            )
            rates = price[model]
            row["cost_usd"] = None if rates is None else inp * rates[0] + out * rates[1]
            rows.append(row)
            elapsed += duration + 500
        i += 1
    rows.sort(key=lambda r: r["start_time"])  # as they arrive
    return rows[:n]


def _unit_prices() -> dict[str, tuple[float, float] | None]:
    """USD per input and output token of each model, from the real price table (None: unpriced).

    Priced once per model rather than per row: generating 10M rows is then bounded by the
    store's write path, which is what the build measures.
    """
    pricer = Pricer()
    prices: dict[str, tuple[float, float] | None] = {}
    for models, _, _ in TASKS.values():
        for provider, model in models:
            probe = dict.fromkeys(ROW_COLUMNS)
            probe.update(provider=provider, request_model=model, response_model=model, status="ok",
                         start_time=datetime.now(UTC), input_tokens=1000, output_tokens=0)
            per_input = row_cost(pricer, probe)
            probe.update(input_tokens=0, output_tokens=1000)
            per_output = row_cost(pricer, probe)
            prices[model] = None if per_input is None or per_output is None else (per_input / 1000, per_output / 1000)
    return prices


def build(url: str, rows: int) -> tuple[Store, datetime]:
    """The store at ``url`` holding ``rows`` rows, built through the write path unless cached."""
    store = open_store(url)
    have = store.count_rows()
    if have == rows:
        extent = queries.time_extent(store.engine)
        assert extent[1] is not None
        print(f"  cached store with {have:,} rows (ending {extent[1]:%Y-%m-%d %H:%M} UTC)")
        return store, extent[1] + timedelta(minutes=1)
    if have:
        raise SystemExit(f"{store.url} holds {have:,} rows, not {rows:,}: remove it first")
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    began = time.perf_counter()
    written = 0
    for offset in range(0, rows, 200_000):  # generated in slices: 10M rows do not fit in memory at once
        chunk = make_rows(min(200_000, rows - offset), end, seed=offset)
        for j in range(0, len(chunk), 2000):
            written += store.insert_rows(chunk[j:j + 2000])
        spent = time.perf_counter() - began
        print(f"  built {written:,} rows in {spent:,.0f} s ({written / spent:,.0f} rows/s, generation included)",
              flush=True)
    if store.engine.dialect.name == "postgresql":
        # Measure the store autovacuum keeps, not one fresh from a bulk load: every rollup
        # row was updated once per batch and its dead versions are still in the way.
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE)")
        print("  vacuumed and analyzed, as autovacuum would have by now")
    return store, end


def _pages(q: ModuleType, f: Filters, bucket: int) -> dict[str, list[Callable[[Any], Any]]]:
    """Each page's exact set of queries (dashboard/views/*.py and the sidebar)."""
    failed = replace(f, statuses=("invalid_output", "timeout", "rate_limited", "provider_error", "client_error",
                                  "cancelled", "error"))
    invalid = replace(f, statuses=("invalid_output",))
    traces: list[Callable[[Any], Any]] = [lambda e: q.count_calls(e, f), lambda e: q.list_calls(e, f, limit=50)]
    if q is queries:
        traces.append(lambda e: queries.raw_time_extent(e))
    return {
        "sidebar": [lambda e: q.has_rows(e), lambda e: q.filter_options(e, f.time_only())],
        "overview": [lambda e: q.summary(e, f), lambda e: q.timeseries(e, f, bucket_seconds=bucket),
                     lambda e: q.breakdown(e, f, by="task"), lambda e: q.breakdown(e, f, by="model")],
        "cost": [lambda e: q.summary(e, f), lambda e: q.timeseries(e, f, bucket_seconds=bucket, by="model"),
                 lambda e: q.breakdown(e, f, by="task"), lambda e: q.breakdown(e, f, by="model"),
                 lambda e: q.retry_waste(e, f, by="task"), lambda e: q.breakdown(e, f, by=("task", "prompt_version"))],
        "latency": [lambda e: q.summary(e, f), lambda e: q.latency_percentiles(e, f, measure="ttft"),
                    lambda e: q.latency_percentiles(e, f, bucket_seconds=bucket),
                    lambda e: q.latency_percentiles(e, f, by="task"),
                    lambda e: q.latency_percentiles(e, f, by="model", measure="request"),
                    lambda e: q.latency_percentiles(e, f, by="model", measure="ttft")],
        "failures": [lambda e: q.summary(e, f), lambda e: q.timeseries(e, f, bucket_seconds=bucket, by="status"),
                     lambda e: q.breakdown(e, f, by=("task", "prompt_version")),
                     lambda e: q.timeseries(e, invalid, bucket_seconds=bucket, by="prompt_version"),
                     lambda e: q.breakdown(e, failed, by=("status", "failure_reason")),
                     lambda e: q.timeseries(e, failed, bucket_seconds=bucket, by="failure_reason")],
        "traces": traces,
        "alerts": [lambda e: queries.list_alert_rules(e), lambda e: queries.list_alert_events(e, f, limit=200)],
    }


def _time(page: list[Callable[[Any], Any]], store: Store) -> float:
    began = time.perf_counter()
    for query in page:
        query(store.engine)
    return time.perf_counter() - began


def measure(store: Store, end: datetime, baseline: bool) -> None:
    """Print each page's time per window (and the raw-row baseline's), a line per page."""
    windows = {"24 h": timedelta(days=1), "7 days": timedelta(days=7), "30 days": timedelta(days=30)}
    plans = {}
    for name, span in windows.items():
        f = Filters.last(span, now=end)
        bucket = queries.choose_bucket(f.start, f.end)  # type: ignore[arg-type]
        plans[name] = (_pages(queries, f, bucket), _pages(raw_queries, f, bucket) if baseline else {})
    print(f"  {'page':<10}" + "".join(f"{name:>28}" for name in windows), flush=True)
    for page in plans["24 h"][0]:
        cells = []
        for ours, old in plans.values():
            _time(ours[page], store)  # warm the connection pool and the OS cache
            took = min(_time(ours[page], store) for _ in range(2))
            cell = f"{took:.3f} s"
            if baseline:
                before = _time(old[page], store)
                cell += f" (raw {before:.2f} s, {before / took:,.0f}x)"
            cells.append(f"{cell:>28}")
        print(f"  {page:<10}" + "".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="store sizes (e.g. 1000000 10000000)")
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    parser.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/llmlens-bench"))
    parser.add_argument("--pg-url", default=os.environ.get("LLMLENS_BENCH_PG_URL") or os.environ.get(
                        "LLMLENS_TEST_PG_URL"), help="a PostgreSQL server (default: $LLMLENS_BENCH_PG_URL, "
                        "else $LLMLENS_TEST_PG_URL); the benchmark creates its own database on it")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw-row queries (slow at 10M)")
    parser.add_argument("--no-build", action="store_true", help="only measure stores already built")
    parser.add_argument("--browser", action="store_true", help="time every page in headless Chromium (1M only)")
    args = parser.parse_args()
    print("The machine may be shared: compare the ratios, not the absolute figures across runs.")
    for rows in args.rows:
        for db in args.db:
            url = _url(db, rows, args)
            print(f"\n== {rows:,} rows on {db} ({url.split('@')[-1]})")
            if args.no_build and open_store(url).count_rows() != rows:
                print("  not built yet: skipped")
                continue
            store, end = build(url, rows)
            measure(store, end, baseline=not args.no_baseline)
            if args.browser and rows <= 1_000_000:
                from dashboard_browser import time_pages

                for way, pages in time_pages(url).items():
                    for page, seconds in pages.items():
                        print(f"  browser, {way:<9}: {page:<10} drawn in {seconds:.2f} s")
            dispose_engines()


def _url(db: str, rows: int, args: argparse.Namespace) -> str:
    if db == "sqlite":
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(args.cache_dir) / f'dashboard-{rows}.db'}"
    server = args.pg_url
    if not server:
        raise SystemExit("PostgreSQL needs --pg-url or $LLMLENS_BENCH_PG_URL")
    import psycopg

    name = f"llmlens_bench_{rows}"
    admin = server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    base = server if server.startswith("postgresql+psycopg://") else server.replace("postgresql://",
                                                                                   "postgresql+psycopg://")
    return base.rsplit("/", 1)[0] + "/" + name


if __name__ == "__main__":
    main()
