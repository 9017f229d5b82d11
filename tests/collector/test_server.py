"""The collector's HTTP layer in-process: acknowledgement, back-pressure, refusals, auth, health, metrics."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import prometheus_client
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from llmlens.collector.record import SpanRecord
from llmlens.collector.server import CollectorSettings, create_app
from llmlens.collector.store import StoreUnavailable

PROTOBUF = {"content-type": "application/x-protobuf"}


@dataclass
class Result:
    received: int
    stored: int
    duplicates: int = 0
    not_llm: int = 0
    unpriced: int = 0


class StagedStore:
    """A stand-in for the store whose commits the test releases, fails or lets through."""

    def __init__(self) -> None:
        self.committed: list[SpanRecord] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Semaphore(0)
        self.failures = 0
        self.up = True

    def ingest(self, records: Sequence[SpanRecord]) -> Result:
        self.entered.release()
        assert self.release.wait(10), "test never released the commit"
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection refused")
        self.committed.extend(records)
        return Result(len(records), len(records))

    def ping(self) -> bool:
        return self.up


@pytest.fixture
def staged() -> StagedStore:
    return StagedStore()


@pytest.fixture
def client_for(staged: StagedStore) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        settings.setdefault("alert_interval", 0)  # the staged store has no alert tables
        app = create_app(CollectorSettings(**settings), store=staged, ingest=staged.ingest)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    staged.release.set()
    for client in clients:
        client.__exit__(None, None, None)


def _post(client: TestClient, request: ExportTraceServiceRequest, **headers: str) -> Any:
    return client.post("/v1/traces", content=request.SerializeToString(), headers={**PROTOBUF, **headers})


def test_a_batch_is_acknowledged_only_after_it_is_committed(
    client_for: Callable[..., TestClient], staged: StagedStore, span_request: Callable[..., Any]
) -> None:
    client = client_for()
    staged.release.clear()
    answers: list[Any] = []
    sender = threading.Thread(target=lambda: answers.append(_post(client, span_request(4))))
    sender.start()
    assert staged.entered.acquire(timeout=5)
    time.sleep(0.2)
    assert answers == [] and staged.committed == []
    staged.release.set()
    sender.join(5)
    assert answers[0].status_code == 200
    assert len(staged.committed) == 4
    assert answers[0].headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(answers[0].content).HasField("partial_success")


def test_a_full_write_queue_answers_503_with_retry_after_and_the_service_keeps_serving(
    client_for: Callable[..., TestClient], staged: StagedStore, span_request: Callable[..., Any]
) -> None:
    client = client_for(queue_max_batches=1)
    staged.release.clear()
    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(_post(client, span_request(2, seed=1))))
    first.start()
    assert staged.entered.acquire(timeout=5)  # the writer holds batch 1; the queue is empty
    second = threading.Thread(target=lambda: answers.append(_post(client, span_request(2, seed=2))))
    second.start()
    deadline = time.monotonic() + 5
    writer = client.app.state.service.writer  # type: ignore[attr-defined]
    while writer.depth < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = _post(client, span_request(2, seed=3))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "queue is full" in status_pb2.Status.FromString(refused.content).message
    assert client.get("/healthz").status_code == 200
    staged.release.set()
    first.join(5)
    second.join(5)
    assert [a.status_code for a in answers] == [200, 200]
    assert _post(client, span_request(2, seed=3)).status_code == 200
    assert len(staged.committed) == 6


def test_while_the_database_is_down_exports_get_503_and_succeed_once_it_is_back(
    client_for: Callable[..., TestClient], staged: StagedStore, span_request: Callable[..., Any]
) -> None:
    client = client_for(retry_after=1)
    staged.failures = 1
    down = _post(client, span_request(3))
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    # Within Retry-After the collector does not even try the database again.
    again = _post(client, span_request(3))
    assert again.status_code == 503
    assert staged.committed == []
    metrics = client.get("/metrics").text
    assert "llmlens_collector_database_up 0" in metrics
    # The second was refused before its body was read (shedding load is cheap), so only
    # the first batch's spans were counted.
    assert "llmlens_collector_spans_dropped_total 3" in metrics
    assert 'llmlens_collector_responses_total{code="503"} 2' in metrics
    time.sleep(1.05)
    assert _post(client, span_request(3)).status_code == 200
    assert len(staged.committed) == 3
    assert "llmlens_collector_database_up 1" in client.get("/metrics").text


def test_json_requests_get_json_answers_and_rejected_spans_are_counted_as_partial_success(
    client_for: Callable[..., TestClient], staged: StagedStore
) -> None:
    client = client_for()
    spans = [
        {
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174",
            "name": "chat",
            "startTimeUnixNano": "1780000000000000000",
            "endTimeUnixNano": "1780000001000000000",
        },
        {"traceId": "not-an-id", "spanId": "eee19b7ec3c1b175", "name": "chat", "startTimeUnixNano": "1"},
    ]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    answer = client.post(
        "/v1/traces",
        content=gzip.compress(body),
        headers={"content-type": "application/json; charset=utf-8", "content-encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1" and "traceId" in partial["errorMessage"]
    assert [r.span_id for r in staged.committed] == ["eee19b7ec3c1b174"]


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/plain"}, b"{}", 415),
        ({}, b"{}", 415),
        ({"content-type": "application/json", "content-encoding": "br"}, b"{}", 415),
        ({"content-type": "application/json"}, b'{"resourceSpans": [', 400),
        ({"content-type": "application/x-protobuf"}, b"\xff\xff\xff", 400),
        ({"content-type": "application/x-protobuf", "content-encoding": "gzip"}, b"not gzip", 400),
        ({"content-type": "application/x-protobuf"}, b"\x00" * 5000, 413),
        (
            {"content-type": "application/x-protobuf", "content-encoding": "gzip"},
            gzip.compress(bytes(50_000_000)),
            413,
        ),
    ],
    ids=[
        "text-plain",
        "no-content-type",
        "brotli",
        "bad-json",
        "bad-protobuf",
        "bad-gzip",
        "oversized",
        "gzip-bomb",
    ],
)
def test_bad_bodies_are_refused_with_a_status_message_and_nothing_is_committed(
    client_for: Callable[..., TestClient],
    staged: StagedStore,
    span_request: Callable[..., Any],
    headers: dict[str, str],
    body: bytes,
    status: int,
) -> None:
    client = client_for(max_body_bytes=4096)
    answer = client.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == status
    if answer.headers["content-type"] == "application/json":
        assert answer.json()["message"]
    else:
        assert status_pb2.Status.FromString(answer.content).message
    assert staged.committed == []
    assert _post(client, span_request(1)).status_code == 200


def test_with_a_token_exports_and_metrics_need_it_and_health_does_not(
    client_for: Callable[..., TestClient], span_request: Callable[..., Any]
) -> None:
    client = client_for(token="s3cret")
    assert _post(client, span_request(1)).status_code == 401
    wrong = _post(client, span_request(1), authorization="Bearer s3cre")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert _post(client, span_request(1), authorization="Bearer s3cret").status_code == 200
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_health_reports_the_database_and_the_queue(
    client_for: Callable[..., TestClient], staged: StagedStore
) -> None:
    client = client_for(queue_max_batches=7)
    assert client.get("/healthz").json() == {
        "status": "ok",
        "database": "up",
        "queue_depth": 0,
        "queue_capacity": 7,
        "spool_records": 0,
        "spool_bytes": 0,
        "spool_max_bytes": 0,  # no spool configured
        "spans_lost": {},
    }
    staged.up = False
    down = client.get("/healthz")
    assert down.status_code == 503 and down.json()["database"] == "down"


def test_metrics_count_received_stored_rejected_and_responses_in_prometheus_text(
    client_for: Callable[..., TestClient], span_request: Callable[..., Any]
) -> None:
    client = client_for()
    assert _post(client, span_request(5)).status_code == 200
    client.post("/v1/traces", content=b"{", headers={"content-type": "application/json"})
    response = client.get("/metrics")
    assert response.headers["content-type"] == prometheus_client.CONTENT_TYPE_LATEST
    text = response.text
    assert "# TYPE llmlens_collector_spans_received_total counter" in text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["llmlens_collector_spans_received"].type == "counter"
    assert _sample(families, "llmlens_collector_spans_received_total") == 5
    assert _sample(families, "llmlens_collector_spans_stored_total") == 5
    assert _sample(families, "llmlens_collector_responses_total", code="400") == 1
    assert _sample(families, "llmlens_collector_responses_total", code="200") == 1
    assert families["llmlens_collector_queue_depth"].type == "gauge"
    assert _sample(families, "llmlens_collector_queue_depth") == 0


def _sample(families: dict[str, Any], name: str, **labels: str) -> float:
    values = [sample.value for family in families.values() for sample in family.samples
              if sample.name == name and sample.labels == labels]
    assert len(values) == 1, (name, labels, values)
    return float(values[0])


def test_each_collector_app_counts_in_a_registry_of_its_own_never_the_global_one(
    client_for: Callable[..., TestClient], span_request: Callable[..., Any]
) -> None:
    first, second = client_for(), client_for()
    assert _post(first, span_request(3)).status_code == 200
    services = [client.app.state.service for client in (first, second)]  # type: ignore[attr-defined]
    assert services[0].registry is not services[1].registry
    assert prometheus_client.REGISTRY not in (services[0].registry, services[1].registry)
    assert prometheus_client.REGISTRY.get_sample_value("llmlens_collector_spans_received_total") is None
    assert services[0].registry.get_sample_value("llmlens_collector_spans_received_total") == 3
    assert services[1].registry.get_sample_value("llmlens_collector_spans_received_total") == 0


def test_a_flood_is_refused_with_503_beyond_the_bounded_queue_and_every_acknowledged_batch_is_stored(
    client_for: Callable[..., TestClient], staged: StagedStore, span_request: Callable[..., Any]
) -> None:
    client = client_for(queue_max_batches=2)
    staged.release.clear()
    answers: dict[int, int] = {}

    def send(seed: int) -> None:
        answers[seed] = _post(client, span_request(10, seed=seed)).status_code

    senders = [threading.Thread(target=send, args=(seed,)) for seed in range(1, 21)]
    for sender in senders:
        sender.start()
    deadline = time.monotonic() + 10
    # The writer holds what it took (blocked in its commit), the queue holds two: the rest
    # must be refused, promptly, without waiting for the commit.
    while len(answers) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    writer = client.app.state.service.writer  # type: ignore[attr-defined]
    assert writer.depth <= 2
    assert set(answers.values()) == {503}
    staged.release.set()
    for sender in senders:
        sender.join(10)
    accepted = sorted(seed for seed, code in answers.items() if code == 200)
    assert len(answers) == 20 and 3 <= len(accepted) <= 8
    stored_traces = {record.trace_id[:16] for record in staged.committed}
    assert stored_traces == {seed.to_bytes(8, "big").hex() for seed in accepted}


def test_a_chunked_body_that_grows_past_the_limit_is_refused_while_streaming(
    client_for: Callable[..., TestClient], staged: StagedStore
) -> None:
    client = client_for(max_body_bytes=4096)

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"\x00" * 1024

    answer = client.post("/v1/traces", content=chunks(), headers=PROTOBUF)
    assert answer.status_code == 413
    assert staged.committed == []


def test_request_bodies_held_at_once_are_bounded_in_bytes_inflated_size_included(
    client_for: Callable[..., TestClient], staged: StagedStore, span_request: Callable[..., Any]
) -> None:
    body = span_request(20).SerializeToString()
    client = client_for(max_inflight_bytes=2 * len(body) + 100, queue_max_batches=8)
    staged.release.clear()
    answers: list[int] = []
    holders = [
        threading.Thread(
            target=lambda s=seed: answers.append(_post(client, span_request(20, seed=s)).status_code)
        )
        for seed in (1, 2)
    ]
    for holder in holders:
        holder.start()
    deadline = time.monotonic() + 5
    service = client.app.state.service  # type: ignore[attr-defined]
    while service._inflight < 2 * len(body) and time.monotonic() < deadline:
        time.sleep(0.01)
    third = _post(client, span_request(20, seed=3))
    assert (
        third.status_code == 503
        and "bodies in progress" in status_pb2.Status.FromString(third.content).message
    )
    staged.release.set()
    for holder in holders:
        holder.join(5)
    assert answers == [200, 200]
    # A small gzip body that inflates past what is left of the budget is refused too.
    staged.release.clear()
    holder = threading.Thread(
        target=lambda: answers.append(_post(client, span_request(20, seed=4)).status_code)
    )
    holder.start()
    while service._inflight < len(body) and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    packed = gzip.compress(span_request(40, seed=5).SerializeToString())
    assert len(packed) < len(body)
    refused = client.post("/v1/traces", content=packed, headers={**PROTOBUF, "content-encoding": "gzip"})
    assert refused.status_code == 503
    staged.release.set()
    holder.join(5)
    assert service._inflight == 0
