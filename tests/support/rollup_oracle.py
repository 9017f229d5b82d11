"""The aggregates of ``llmlens.collector.queries`` computed from raw rows in Python.

Tests fetch the raw rows and compare every rollup-based answer with these. The
definitions are DESIGN.md's ("What a row is"), written independently of the store: calls
count final rows, spend and tokens every row, waste every row that is not a final ok.
Time ranges are widened to whole minutes as the store documents.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from llmlens.collector.queries import Filters

DIMENSION_COLUMNS = {"task": "task", "model": "request_model", "response_model": "response_model",
                     "provider": "provider", "prompt_name": "prompt_name", "prompt_version": "prompt_version",
                     "status": "status", "failure_reason": "failure_reason", "service": "service_name"}
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")

TASKS = ["extract_ticket", "summarize_thread", "classify", "draft_reply", None]
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("local", "llama")]
STATUSES = ["ok"] * 12 + ["invalid_output", "timeout", "rate_limited", "provider_error"]
REASONS = {"ok": None, "invalid_output": "ValidationError: priority", "timeout": "APITimeoutError",
           "rate_limited": "RateLimitError", "provider_error": "InternalServerError"}


def random_rows(n: int, *, seed: int, start: datetime, days: float = 3.0) -> list[dict[str, Any]]:
    """``n`` complete rows spread over ``days`` from ``start``: retries, streams, unpriced models."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        provider, model = rng.choice(MODELS)
        status = rng.choice(STATUSES)
        final = rng.random() > 0.15
        streaming = rng.random() < 0.3
        duration = math.exp(rng.gauss(6.0, 1.0))  # ~400 ms, from ~20 ms to ~8 s
        rows.append({
            "trace_id": f"{seed:08x}{i:024x}", "span_id": f"{i:016x}", "parent_span_id": None,
            "service_name": rng.choice(["support-bot", "billing"]), "name": f"chat {model}",
            "start_time": start + timedelta(seconds=rng.uniform(0, days * 86400)),
            "duration_ms": duration,
            "time_to_first_token_ms": duration * rng.uniform(0.05, 0.5) if streaming and rng.random() < 0.9 else None,
            "task": rng.choice(TASKS), "operation": "chat", "provider": provider, "request_model": model,
            "response_model": rng.choice([model, f"{model}-2025", None]), "prompt_name": rng.choice(["p", None]),
            "prompt_version": rng.choice(["3", "4", None]), "status": status, "failure_reason": REASONS[status],
            "error_type": None, "input_tokens": rng.choice([None, rng.randint(0, 5000)]),
            "output_tokens": rng.randint(0, 900), "cache_read_tokens": rng.choice([None, 0, 100]),
            "cache_write_tokens": rng.choice([None, 50]), "reasoning_tokens": rng.choice([None, 0, 30]),
            "cost_usd": None if model == "llama" else rng.uniform(0, 0.05), "reported_cost_usd": None,
            "call_id": f"{i:016x}", "attempt": rng.choice([1, 1, 2, 3]), "max_attempts": 3, "final": final,
            "call_duration_ms": duration * rng.uniform(1, 3) if final and rng.random() < 0.8 else None,
            "idempotency_key": None, "streaming": streaming, "finish_reason": "stop", "conversation_id": None,
            "prompt_hash": None, "attributes": {"i": i},
        })
    return rows


def random_filters(rng: random.Random, t0: datetime, days: float = 3.0) -> Filters:
    """A random selection: any range (seconds, not just minutes), some dimension filters."""
    def some(values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(rng.sample(list(values), rng.randint(1, 2))) if rng.random() < 0.3 else ()

    start = t0 + timedelta(seconds=rng.uniform(-3600, days * 86400)) if rng.random() < 0.85 else None
    end = (start or t0) + timedelta(seconds=rng.uniform(60, days * 86400)) if rng.random() < 0.85 else None
    return Filters(start=start, end=end, tasks=some(TASKS), models=some([m for _, m in MODELS]),
                   prompt_versions=some(["3", "4", None]), statuses=some(sorted(set(STATUSES))),
                   services=some(["support-bot", "billing"]))


def widened(filters: Filters) -> tuple[float, float]:
    start = -math.inf if filters.start is None else math.floor(filters.start.timestamp() / 60) * 60
    end = math.inf if filters.end is None else math.ceil(filters.end.timestamp() / 60) * 60
    return start, end


def select_rows(rows: Iterable[dict[str, Any]], filters: Filters) -> list[dict[str, Any]]:
    start, end = widened(filters)
    chosen = []
    for row in rows:
        if not start <= row["start_time"].timestamp() < end:
            continue
        if any(values and row[column] not in values for column, values in (
                ("task", filters.tasks), ("request_model", filters.models),
                ("prompt_version", filters.prompt_versions), ("status", filters.statuses),
                ("service_name", filters.services))):
            continue
        chosen.append(row)
    return chosen


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    final = [r for r in rows if r["final"]]
    out: dict[str, Any] = {
        "calls": len(final), "requests": len(rows),
        "retried_calls": sum(1 for r in final if r["attempt"] > 1),
        "failed_calls": sum(1 for r in final if r["status"] != "ok"),
        "invalid_output_calls": sum(1 for r in final if r["status"] == "invalid_output"),
        "spend_usd": sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None),
        "wasted_spend_usd": sum(r["cost_usd"] for r in rows
                                if r["cost_usd"] is not None and not (r["final"] and r["status"] == "ok")),
        "unpriced_requests": sum(1 for r in rows if r["cost_usd"] is None),
    }
    for name in TOKENS:
        out[name] = sum(r[name] or 0 for r in rows)
    return out


def group(rows: Iterable[dict[str, Any]], by: Sequence[str], bucket: int | None = None) -> dict[tuple[Any, ...],
                                                                                               list[dict[str, Any]]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = tuple(row[DIMENSION_COLUMNS[name]] for name in by)
        if bucket is not None:
            start = int(row["start_time"].timestamp()) // bucket * bucket
            key = (datetime.fromtimestamp(start, UTC), *key)
        groups[key].append(row)
    return groups


def measure_values(rows: Iterable[dict[str, Any]], measure: str) -> list[float]:
    if measure == "call":
        return [r["call_duration_ms"] if r["call_duration_ms"] is not None else r["duration_ms"]
                for r in rows if r["final"]]
    if measure == "request":
        return [r["duration_ms"] for r in rows]
    return [r["time_to_first_token_ms"] for r in rows if r["streaming"] and r["time_to_first_token_ms"] is not None]


def nearest_rank(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = -(-len(ordered) * round(q * 10000) // 10000)  # the smallest rank with rank >= q * n
    return ordered[max(rank, 1) - 1]
