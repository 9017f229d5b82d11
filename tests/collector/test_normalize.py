"""normalize(): one span in, one row (or none) out, whatever the instrumentation."""

from __future__ import annotations

from typing import Any

import pytest

from llmlens.collector.ingest import Ingestor
from llmlens.collector.normalize import normalize
from llmlens.collector.pricing import Pricer
from llmlens.collector.record import STATUS_ERROR, SpanRecord
from llmlens.collector.store import open_store

T0 = 1_764_000_000_000_000_000


def _record(attrs: dict[str, Any], span_id: str = "1" * 16, parent: str | None = None, **kw: Any) -> SpanRecord:
    return SpanRecord(trace_id="f" * 32, span_id=span_id, parent_span_id=parent, name=kw.pop("name", "chat"),
                      start_time_unix_nano=T0, end_time_unix_nano=T0 + 250_000_000, attributes=attrs,
                      resource_attributes={"service.name": "support-bot"}, **kw)


def test_a_genai_span_maps_to_columns_and_keeps_the_rest_as_json() -> None:
    row = normalize(_record({
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80, "gen_ai.usage.cache_read.input_tokens": 1024,
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.time_to_first_chunk": 0.12, "server.address": "api.openai.com",
    }))
    assert row is not None
    assert row["duration_ms"] == 250.0 and row["time_to_first_token_ms"] == pytest.approx(120.0)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (1200, 1024, 80)
    assert row["finish_reason"] == "stop" and row["streaming"] is True
    assert row["task"] is None  # no task attribute: the ingest path looks for a named ancestor
    assert row["attributes"] == {"gen_ai.response.id": "chatcmpl-1", "server.address": "api.openai.com"}
    assert row["call_id"] == row["span_id"] and row["final"] is True


def test_cache_tokens_reported_on_top_of_input_are_folded_in() -> None:
    row = normalize(_record({"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-sonnet-4-5",
                             "gen_ai.usage.prompt_tokens": 10, "gen_ai.usage.completion_tokens": 5,
                             "gen_ai.usage.cache_read_input_tokens": 900,
                             "gen_ai.usage.cache_creation_input_tokens": 100}))
    assert row is not None
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (1010, 900, 100)


@pytest.mark.parametrize("attrs", [
    {"llmlens.span_role": "call", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5},
    {"llmlens.merged_into": "2" * 16, "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5},
    {"openinference.span.kind": "CHAIN", "llm.token_count.prompt": 5},
    {"traceloop.span.kind": "workflow", "traceloop.workflow.name": "answer"},
    {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
    {"http.request.method": "POST", "url.full": "https://api.openai.com/v1/chat/completions"},
])
def test_spans_that_are_not_one_provider_request_are_not_rows(attrs: dict[str, Any]) -> None:
    assert normalize(_record(attrs)) is None


def test_prompt_and_answer_content_is_dropped_unless_captured_and_then_redacted() -> None:
    attrs = {
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 3,
        "gen_ai.input.messages": '[{"role":"user","parts":[{"content":"mail me at ann@example.com"}]}]',
        "gen_ai.prompt.0.content": "mail me at ann@example.com", "gen_ai.prompt.name": "triage",
        "llm.input_messages.0.message.content": "secret", "input.value": "secret",
        "traceloop.entity.input": "secret", "langfuse.observation.output": "secret",
    }
    row = normalize(_record(attrs))
    assert row is not None
    assert "secret" not in str(row) and "ann@example.com" not in str(row)
    assert row["prompt_name"] == "triage"

    captured = normalize(_record(attrs), capture_content=True, redact=lambda text, limit: text.replace(
        "ann@example.com", "<email>")[:limit])
    assert captured is not None
    assert "<email>" in captured["attributes"]["gen_ai.input.messages"]
    assert "ann@example.com" not in str(captured)


def test_error_status_comes_from_error_type_or_the_exception_event() -> None:
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    row = normalize(_record(chat, status_code=STATUS_ERROR,
                            events=[("exception", {"exception.type": "anthropic.OverloadedError",
                                                   "exception.message": "user text"})]))
    assert row is not None
    assert (row["status"], row["error_type"], row["failure_reason"]) == (
        "provider_error", "OverloadedError", "OverloadedError")
    row = normalize(_record({**chat, "error.type": "timeout"}, status_code=STATUS_ERROR))
    assert row is not None and row["status"] == "timeout"
    row = normalize(_record({**chat, "error.type": "400"}, status_code=STATUS_ERROR))
    assert row is not None and row["status"] == "client_error"


def test_only_the_leaf_llm_call_counts_when_a_framework_span_repeats_its_usage(db_url: str) -> None:
    usage = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 100,
             "gen_ai.usage.output_tokens": 10}
    framework = _record({**usage, "gen_ai.operation.name": "chat"}, span_id="a" * 16, name="langchain.llm")
    leaf = _record({**usage, "gen_ai.operation.name": "chat"}, span_id="b" * 16, parent="a" * 16)
    store = open_store(db_url)
    ingestor = Ingestor(store, Pricer())

    # Same batch.
    result = ingestor.ingest([leaf, framework])
    assert (result.stored, result.aggregates) == (1, 1)
    assert [r["span_id"] for r in store.fetch_rows()] == ["b" * 16]

    # Separate batches: the child was stored first, the parent arrives later.
    leaf2 = _record({**usage, "gen_ai.operation.name": "chat"}, span_id="d" * 16, parent="c" * 16)
    framework2 = _record({**usage, "gen_ai.operation.name": "chat"}, span_id="c" * 16)
    assert ingestor.ingest([leaf2]).stored == 1
    assert ingestor.ingest([framework2]).aggregates == 1
    assert store.count_rows() == 2


def test_attributes_of_the_wrong_type_are_ignored_or_coerced_never_fatal(db_url: str) -> None:
    weird = _record({
        "gen_ai.request.model": 42,  # a number where a name belongs
        "gen_ai.usage.input_tokens": "1200",  # a numeric string: coerced
        "gen_ai.usage.output_tokens": "lots",  # not a number: ignored
        "gen_ai.usage.cache_read.input_tokens": True,  # a bool is not a count
        "gen_ai.response.time_to_first_chunk": "soon",
        "gen_ai.request.stream": "true",
        "llmlens.attempt": [1, 2],
        "llmlens.status": "on fire",  # not in the taxonomy
        "gen_ai.response.finish_reasons": (),
    }, span_id="e" * 16)
    row = normalize(weird)
    assert row is not None
    assert row["request_model"] == "42"
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (1200, None, None)
    assert row["time_to_first_token_ms"] is None and row["streaming"] is True
    assert row["attempt"] == 1 and row["status"] == "error" and row["finish_reason"] is None
    result = Ingestor(open_store(db_url), Pricer()).ingest([weird])
    assert result.stored == 1 and result.unpriced == 1


def test_the_row_has_every_column_in_the_order_of_its_type() -> None:
    from llmlens.collector.store import SpanRow

    row = normalize(_record({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}))
    assert row is not None
    assert list(row) == list(SpanRow.__annotations__)


def test_an_empty_value_lets_another_name_speak_on_spans_of_a_shape_seen_before() -> None:
    def provider(value: Any) -> str | None:
        row = normalize(_record({"gen_ai.operation.name": "chat", "gen_ai.provider.name": value,
                                 "gen_ai.system": "anthropic", "gen_ai.request.model": "m"}))
        assert row is not None
        return row["provider"]

    assert provider("openai") == "openai"
    assert provider(None) == "anthropic"  # same names, the preferred one empty
    assert provider("openai") == "openai"


def test_the_table_of_attribute_name_lists_stays_bounded() -> None:
    from llmlens.collector import normalize as module

    for i in range(module._MAX_SHAPES + 10):
        assert normalize(_record({"gen_ai.operation.name": "chat", f"app.attribute_{i}": i})) is not None
    assert len(module._SHAPES) <= module._MAX_SHAPES


def test_remembered_values_keep_their_type_and_unhashable_ones_are_converted_all_the_same() -> None:
    def columns(model: Any, finish: Any) -> tuple[Any, Any]:
        row = normalize(_record({"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                                 "gen_ai.response.finish_reasons": finish}))
        assert row is not None
        return row["request_model"], row["finish_reason"]

    # 1 == True == 1.0 as keys: each is converted from its own value, never another's.
    assert columns("gpt-4o", ("end_turn",)) == ("gpt-4o", "stop")
    assert columns(1, (True,)) == ("1", "true")
    assert columns(True, (1,)) == ("True", "1")
    assert columns(1.0, ("max_tokens",)) == ("1.0", "length")
    # Lists (OTLP arrays decoded by some senders) cannot be remembered.
    assert columns(["gpt-4o-mini", "x"], ["MAX_TOKENS"]) == ("gpt-4o-mini", "length")
    assert columns("gpt-4o", ["tool_use"]) == ("gpt-4o", "tool_call")


def test_the_remembered_values_stay_bounded() -> None:
    from llmlens.collector import normalize as module

    for i in range(module._MAX_MEMO + 10):
        row = normalize(_record({"gen_ai.operation.name": "chat", "gen_ai.request.model": f"model-{i}"}))
        assert row is not None and row["request_model"] == f"model-{i}"
    memo = module._MEMOS["request_model"].__self__
    assert 0 < len(memo) <= module._MAX_MEMO
    # Long values are converted, not kept: a sender cannot fill the memos with megabytes.
    memo.clear()
    long_model = "m" * 100_000
    for value in (long_model, ("stop",) * 100):
        row = normalize(_record({"gen_ai.operation.name": "chat", "gen_ai.request.model": value,
                                 "gen_ai.response.finish_reasons": value}))
        assert row is not None and row["request_model"] == (value[:255] if isinstance(value, str) else "stop")
    assert len(memo) == 0 and long_model not in module._MEMOS["finish_reasons"].__self__
