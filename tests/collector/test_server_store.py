"""The collector in-process on a real store (SQLite file and PostgreSQL): rows, duplicates, refusals."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from starlette.testclient import TestClient

from llmlens.collector.server import CollectorSettings, create_app
from llmlens.collector.store import Store, open_store

PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(CollectorSettings(db_url=db_url, max_body_bytes=64 * 1024))) as client:
        yield client


@pytest.fixture
def store(db_url: str) -> Store:
    return open_store(db_url)


def test_exported_spans_become_priced_rows(
    client: TestClient, store: Store, span_request: Callable[..., Any]
) -> None:
    answer = client.post(
        "/v1/traces", content=span_request(3, service="billing").SerializeToString(), headers=PROTOBUF
    )
    assert answer.status_code == 200
    rows = store.fetch_rows()
    assert len(rows) == 3
    row = rows[0]
    assert (row["provider"], row["request_model"], row["operation"]) == ("openai", "gpt-4o-mini", "chat")
    assert (row["input_tokens"], row["output_tokens"], row["status"]) == (1000, 200, "ok")
    assert row["service_name"] == "billing" and row["task"] is None  # no span names a task
    assert row["cost_usd"] is not None and row["cost_usd"] > 0
    assert row["duration_ms"] == pytest.approx(850.0)
    assert row["finish_reason"] == "stop"


def test_the_same_request_posted_twice_yields_one_set_of_rows(
    client: TestClient, store: Store, span_request: Callable[..., Any]
) -> None:
    body = span_request(5).SerializeToString()
    assert client.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    first = store.fetch_rows()
    # An exporter retry, this time gzipped as JSON: same spans, so no new rows.
    as_json = gzip.compress(MessageToJson(span_request(5)).encode())
    again = client.post(
        "/v1/traces",
        content=as_json,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert again.status_code == 200
    assert store.fetch_rows() == first
    assert sum(row["cost_usd"] for row in store.fetch_rows()) == pytest.approx(
        sum(row["cost_usd"] for row in first)
    )
    metrics = client.get("/metrics").text
    assert "llmlens_collector_spans_stored_total 5" in metrics
    assert "llmlens_collector_spans_duplicate_total 5" in metrics


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        (PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f", 400),
        (
            {"content-type": "application/json"},
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId":',
            400,
        ),
        ({**PROTOBUF, "content-encoding": "gzip"}, gzip.compress(bytes(64 * 1024 * 1024)), 413),
        (PROTOBUF, bytes(65 * 1024), 413),
    ],
    ids=["malformed-protobuf", "malformed-json", "gzip-bomb", "oversized"],
)
def test_bad_requests_are_refused_and_rows_already_stored_are_untouched(
    client: TestClient,
    store: Store,
    span_request: Callable[..., Any],
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    assert (
        client.post(
            "/v1/traces", content=span_request(2, seed=1).SerializeToString(), headers=PROTOBUF
        ).status_code
        == 200
    )
    before = store.fetch_rows()
    assert client.post("/v1/traces", content=body, headers=headers).status_code == status
    assert store.fetch_rows() == before
    # ...and the service keeps serving.
    assert (
        client.post(
            "/v1/traces", content=span_request(2, seed=2).SerializeToString(), headers=PROTOBUF
        ).status_code
        == 200
    )
    assert len(store.fetch_rows()) == 4


def test_spans_that_are_not_llm_calls_are_accepted_but_not_stored(client: TestClient, store: Store) -> None:
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.flask"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /health",
                                "startTimeUnixNano": "1780000000000000000",
                                "endTimeUnixNano": "1780000000100000000",
                                "attributes": [{"key": "http.route", "value": {"stringValue": "/health"}}],
                            },
                        ],
                    }
                ]
            }
        ]
    }
    answer = client.post("/v1/traces", content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.json() == {}
    assert store.fetch_rows() == []
    assert "llmlens_collector_spans_not_llm_total 1" in client.get("/metrics").text


def test_spans_refused_as_invalid_are_counted_as_lost_in_the_store_and_on_metrics(
    client: TestClient, store: Store, span_request: Callable[..., Any]
) -> None:
    from llmlens.collector.queries import Filters, drops_by_cause

    request = span_request(4, service="billing")
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\0" * 16  # can never be stored
    answer = client.post("/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert answer.status_code == 200
    assert store.count_rows() == 3
    assert drops_by_cause(store.engine, Filters()) == {"rejected": 1}
    assert 'llmlens_collector_spans_lost_total{cause="rejected"} 1' in client.get("/metrics").text
    assert client.get("/healthz").json()["spans_lost"] == {"rejected": 1}
