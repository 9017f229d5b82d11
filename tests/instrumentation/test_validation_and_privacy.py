"""Output validation with value-free failure reasons, content capture with redaction, prompt hashes."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING, Any, Literal

import openai
import pydantic
import pytest

import llmlens
from llmlens import semconv as sc
from llmlens._redact import luhn_valid, prompt_hash, redact_text
from llmlens._validation import failure_reason_of

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider

MESSAGES = [{"role": "user", "content": "hello"}]


class Ticket(pydantic.BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


def _extractor(client: openai.OpenAI, **options: Any) -> Any:
    @llmlens.observe(task="extract_ticket", output=Ticket, **options)
    def extract(text: str) -> Any:
        return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])

    return extract


def test_a_valid_answer_is_available_through_current_output(spans: Spans, fake: FakeProvider,
                                                            openai_client: openai.OpenAI) -> None:
    fake.reply('```json\n{"title": "Printer on fire", "priority": "high"}\n```')
    response = _extractor(openai_client)("my printer is on fire")
    assert response.choices[0].message.content.startswith("```")  # the response itself is unchanged
    assert llmlens.current_output(Ticket) == Ticket(title="Printer on fire", priority="high")
    assert spans.one().attributes[sc.STATUS] == "ok"  # type: ignore[index]


def test_an_invalid_answer_is_invalid_output_with_a_value_free_reason(spans: Spans, fake: FakeProvider,
                                                                      openai_client: openai.OpenAI) -> None:
    fake.reply('{"title": "Call bob@example.com NOW", "priority": "URGENT-SECRET"}', input_tokens=9)
    with pytest.raises(llmlens.InvalidOutput) as caught:
        _extractor(openai_client)("my printer is on fire")
    reason = "priority: input should be 'low', 'medium' or 'high'"
    assert caught.value.failure_reason == reason and str(caught.value) == reason
    assert isinstance(caught.value.validation_error, pydantic.ValidationError)
    assert caught.value.__cause__ is caught.value.validation_error
    span = spans.one()
    attrs = dict(span.attributes or {})
    assert attrs[sc.STATUS] == "invalid_output" and attrs[sc.FAILURE_REASON] == reason
    assert attrs[sc.USAGE_INPUT_TOKENS] == 9, "an invalid answer still costs tokens"
    dumped = json.dumps({"attrs": attrs, "events": [dict(e.attributes or {}) for e in span.events]}, default=str)
    assert "URGENT-SECRET" not in dumped and "bob@example.com" not in dumped
    with pytest.raises(LookupError):
        llmlens.current_output()


def test_invalid_output_is_retried_only_when_asked(spans: Spans, fake: FakeProvider,
                                                   openai_client: openai.OpenAI) -> None:
    fake.reply("not json at all")
    fake.reply('{"title": "t", "priority": "low"}')
    policy = llmlens.RetryPolicy(max_retries=1, base_delay=0, retry_on=frozenset({"invalid_output"}))
    _extractor(openai_client, retry=policy)("x")
    assert llmlens.current_output(Ticket).priority == "low"
    attempts = sorted((s.attributes[sc.ATTEMPT], s.attributes[sc.STATUS], s.attributes.get(sc.FAILURE_REASON))  # type: ignore[index,union-attr]
                      for s in spans.llmlens() if s.attributes[sc.SPAN_ROLE] == "attempt")  # type: ignore[index]
    assert attempts[0][:2] == (1, "invalid_output") and attempts[0][2].startswith("invalid JSON")
    assert attempts[1] == (2, "ok", None)


def test_default_retry_policy_does_not_retry_invalid_output(spans: Spans, fake: FakeProvider,
                                                            openai_client: openai.OpenAI) -> None:
    fake.reply("{}")
    with pytest.raises(llmlens.InvalidOutput) as caught:
        _extractor(openai_client, retry=llmlens.RetryPolicy(max_retries=2))("x")
    assert caught.value.failure_reason == "title: field required; priority: field required"
    assert len(fake.requests) == 1


def test_a_callable_validator_and_its_own_invalid_output_reason(spans: Spans) -> None:
    def must_be_short(text: str) -> str:
        if len(text) > 3:
            raise llmlens.InvalidOutput("too long")
        return text.upper()

    @llmlens.observe(output=must_be_short)
    def answer(text: str) -> str:
        return text

    assert answer("abc") == "abc" and llmlens.current_output() == "ABC"
    with pytest.raises(llmlens.InvalidOutput, match="too long"):
        answer("abcdef")


def test_validation_of_a_stream_happens_when_it_ends(spans: Spans, fake: FakeProvider,
                                                     openai_client: openai.OpenAI) -> None:
    fake.reply('{"title": "t", "priority": "nope"}')

    @llmlens.observe(output=Ticket)
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    with pytest.raises(llmlens.InvalidOutput) as caught:
        list(call())
    assert isinstance(caught.value.__cause__, pydantic.ValidationError)
    assert spans.one().attributes[sc.STATUS] == "invalid_output"  # type: ignore[index]


def test_failure_reasons_group_list_items_and_hide_custom_messages() -> None:
    class Item(pydantic.BaseModel):
        name: str

        @pydantic.field_validator("name")
        @classmethod
        def no_secrets(cls, value: str) -> str:
            raise ValueError(f"{value} is secret")

    class Order(pydantic.BaseModel):
        items: list[Item]

    with pytest.raises(pydantic.ValidationError) as caught:
        Order.model_validate({"items": [{"name": "alice@example.com"}]})
    assert failure_reason_of(caught.value) == "items[*].name: value error"


def test_no_content_is_recorded_by_default(spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    @llmlens.observe
    def call(text: str) -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    call("mail me at bob@example.com")
    attrs = spans.one().attributes or {}
    assert sc.INPUT_MESSAGES not in attrs and sc.OUTPUT_MESSAGES not in attrs and sc.PROMPT_HASH not in attrs


def test_captured_content_is_redacted_and_capped(spans: Spans, fake: FakeProvider,
                                                 openai_client: openai.OpenAI) -> None:
    fake.reply("Sure, I will call +1 415-555-0132.")

    @llmlens.observe(capture_content=True)
    def call(text: str) -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    call("I am bob@example.com, card 4111 1111 1111 1111")
    attrs = spans.one().attributes or {}
    recorded = attrs[sc.INPUT_MESSAGES] + attrs[sc.OUTPUT_MESSAGES]  # type: ignore[operator]
    assert "[EMAIL]" in recorded and "[CARD]" in recorded and "[PHONE]" in recorded
    assert "bob@example.com" not in recorded and "4111" not in recorded and "555" not in recorded
    assert json.loads(attrs[sc.OUTPUT_MESSAGES])[0]["role"] == "assistant"  # type: ignore[arg-type]
    assert len(attrs[sc.PROMPT_HASH]) == 32  # type: ignore[arg-type]


def test_the_standard_environment_variable_turns_capture_on(spans: Spans, monkeypatch: pytest.MonkeyPatch,
                                                            provider: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    exporter = InMemorySpanExporter()
    llmlens.configure(tracer_provider=provider, exporter=exporter)

    @llmlens.observe
    def call(messages: list[dict[str, str]]) -> str:
        return "ok"

    call(messages=[{"role": "user", "content": "token=supersecretvalue"}])
    llmlens.flush()
    attrs = exporter.get_finished_spans()[0].attributes or {}
    assert "token=[REDACTED]" in attrs[sc.INPUT_MESSAGES]  # type: ignore[operator]


def test_redaction_covers_emails_phones_cards_keys_tokens_and_jwts() -> None:
    text = ("bob.smith+x@mail.example.org / +49 30 1234 5678 / 4242-4242-4242-4242 / "
            "sk-proj-abcdefghijklmnopqrstuvwx / AKIAIOSFODNN7EXAMPLE / Authorization: Bearer abcdefghijk123 / "
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLXNpZw / api_key=\"hunter2hunter2\"")
    redacted = redact_text(text, 10_000)
    assert redacted == ("[EMAIL] / [PHONE] / [CARD] / [API_KEY] / [API_KEY] / Authorization: Bearer [TOKEN] / "
                        "[JWT] / api_key=\"[REDACTED]\"")


def test_card_numbers_are_luhn_checked_so_other_long_numbers_stay() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert redact_text("card 4111111111111111", 100) == "card [CARD]"
    assert redact_text("order 4111111111111112", 100) == "order 4111111111111112"
    assert redact_text("on 2024-05-01 at 10:30, v1.2.3, 42 items", 100) == "on 2024-05-01 at 10:30, v1.2.3, 42 items"


def test_redaction_caps_the_size() -> None:
    assert redact_text("a" * 100, 10) == "a" * 10 + "…[truncated]"
    assert redact_text("", 10) == ""


def test_prompt_hash_groups_identical_prompts_with_a_private_secret(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Any) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LLMLENS_HOME", str(home))
    first = prompt_hash("Summarise  this\n text")
    assert first == prompt_hash("Summarise this text ") and first != prompt_hash("Summarise that text")
    secret = home / "secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    import hashlib

    assert first != hashlib.sha256(b"Summarise this text").hexdigest()[:32]
    monkeypatch.setenv("LLMLENS_HASH_SECRET", "shared")
    assert prompt_hash("Summarise this text") != first


def test_a_valid_stream_makes_its_validated_object_available_once_consumed(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI) -> None:
    fake.reply('{"title": "t", "priority": "medium"}')

    @llmlens.observe(output=Ticket)
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)

    list(call())
    assert llmlens.current_output(Ticket).priority == "medium"


def test_hash_prompt_records_only_the_hash_with_capture_off(spans: Spans) -> None:
    @llmlens.observe(hash_prompt=True)
    def call(text: str) -> str:
        return "answer"

    call("Summarise:  the report")
    call("Summarise: the report")
    first, second = (s.attributes or {} for s in spans.llmlens())
    assert first[sc.PROMPT_HASH] == second[sc.PROMPT_HASH]
    assert sc.INPUT_MESSAGES not in first and sc.OUTPUT_MESSAGES not in first


def test_captured_chat_messages_keep_their_roles_in_the_conventions_shape(spans: Spans) -> None:
    @llmlens.observe(capture_content=True)
    def call(messages: list[dict[str, str]]) -> str:
        return "ok"

    call(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "I am a@b.co"}])
    recorded = json.loads(spans.one().attributes[sc.INPUT_MESSAGES])  # type: ignore[arg-type,index]
    assert recorded == [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                        {"role": "user", "parts": [{"type": "text", "content": "I am [EMAIL]"}]}]
