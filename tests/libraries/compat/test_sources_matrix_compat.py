"""The source matrix for sources that need openai 2.x: OpenLIT, and Langfuse's v3 SDK.

Same cases and checks as ``tests/collector/test_sources_matrix*.py`` (cached input, a
stream, a 429, a 500, inside named work whose span arrives after its requests), with a
collector process of this environment per database. Each application runs in a process
of its own: ``openlit.init()`` installs the global tracer provider and instruments every
library it finds, and ``langfuse.openai`` patches the openai module for good, neither of
which a test process could undo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess, module_collector
from source_matrix import Expect, check_rows

from llmlens.collector.store import open_store

OPENAI = "gpt-4o-mini"
SUPPORT = Path(__file__).parents[2] / "support"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def collector(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    with module_collector(request, tmp_path_factory) as running:
        yield running


def _rows(collector: CollectorProcess, service: str) -> list[dict[str, Any]]:
    return open_store(collector.extra["db_url"]).fetch_rows(service_name=service)


def _script(fake: Any) -> None:
    """The four answers each application asks for, in order."""
    fake.reply("cached answer", input_tokens=20, output_tokens=4, cached_tokens=8)
    fake.reply("a streamed answer", input_tokens=30, output_tokens=6, chunk_delay=0.01)
    fake.fail(429)
    fake.fail(500)


def _run(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]


def _expected(task: str, *, reasons: tuple[str | None, str | None], reported: bool = False) -> list[Expect]:
    base = {"model": OPENAI, "provider": "openai", "task": task}
    return [
        Expect(**base, input_tokens=20, output_tokens=4, cache_read=8, reported_cost=reported),
        Expect(**base, input_tokens=30, output_tokens=6, streaming=True, ttft=True, reported_cost=reported),
        Expect(**base, status="rate_limited", failure_reason=reasons[0]),
        Expect(**base, status="provider_error", failure_reason=reasons[1]),
    ]


# What OpenLIT charges per 1,000 tokens (its price-list format): its cost is kept apart.
OPENLIT_PRICES = {"chat": {OPENAI: {"promptPrice": 0.00015, "completionPrice": 0.0006}}}


def test_openlit_rows_match_the_requests_with_its_own_cost_and_time_to_first_token(
    collector: CollectorProcess, fake: Any, tmp_path: Path
) -> None:
    import openlit  # noqa: F401  (installed here: a missing package is an error, not a skip)

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(OPENLIT_PRICES))
    config = tmp_path / "app.json"
    config.write_text(json.dumps({"provider": fake.url, "collector": collector.url, "service": "src-openlit",
                                  "pricing": str(prices)}))
    _script(fake)
    _run(str(SUPPORT / "openlit_app.py"), str(config))
    rows = _rows(collector, "src-openlit")
    # OpenLIT times the first chunk of a stream; of an answer not streamed it records the
    # whole response time, which is no time to a first token and is not kept.
    check_rows(rows, _expected("refunds", reasons=("RateLimitError", "InternalServerError"), reported=True))
    # Its cost, from the price list it was given, ignores the cached-input discount.
    assert [row["reported_cost_usd"] for row in rows[:2]] == pytest.approx([(20 * 0.15 + 4 * 0.6) / 1e6,
                                                                             (30 * 0.15 + 6 * 0.6) / 1e6])


# Langfuse's v3 SDK takes no exporter of its own (v4 added ``span_exporter``): the
# application adds one to the tracer provider it hands to Langfuse, whose own exporter
# targets a Langfuse server (a closed loopback port here) and fails on its own.
_LANGFUSE_V3_APP = """
import sys
from importlib.metadata import version
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from langfuse import Langfuse, observe
assert version("langfuse").startswith("3."), version("langfuse")
provider = TracerProvider(resource=Resource.create({"service.name": "src-langfuse-v3"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[2], timeout=20)))
client_lf = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host="http://127.0.0.1:9", timeout=1,
                     tracer_provider=provider)
from langfuse.openai import openai  # Langfuse's drop-in OpenAI client
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="test", max_retries=0)

@observe(name="answer-ticket")
def answer():
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q1"}])
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q2"}],
                                            stream=True, stream_options={"include_usage": True})
    for _ in stream:
        pass
    for error in (openai.RateLimitError, openai.InternalServerError):
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "q3"}])
        except error:
            pass

answer()
provider.shutdown()
"""


def test_langfuse_v3_generations_make_rows_named_by_the_trace(collector: CollectorProcess, fake: Any) -> None:
    _script(fake)
    _run("-c", _LANGFUSE_V3_APP, fake.url, collector.traces_url)
    rows = _rows(collector, "src-langfuse-v3")
    # As with the 5.x SDK: a failure's message, not its class (the HTTP code read from it
    # is the status, the reason the generic one), and cost details on failed generations only.
    expected = _expected("answer-ticket", reasons=("error", "error"))
    expected[2:] = [replace(want, reported_cost=True) for want in expected[2:]]
    check_rows(rows, expected)
    assert [row["reported_cost_usd"] for row in rows[2:]] == [0.0, 0.0]
