"""instructor's validation retries inside an observed call: every billed request is a priced row.

instructor re-asks the model when its answer does not validate against ``response_model``;
each re-ask is a provider request of the same attempt of the observed call. When instructor
gives up, the call's outcome is ``invalid_output`` and it lands on the last request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Literal

import instructor
import openai
import pydantic
import pytest
from fake_provider import FakeProvider
from instructor.core import InstructorRetryException
from stored_rows import assert_priced_row, assert_timing, stored_rows

import llmlens

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "The office printer is on fire."}]
VALID = '{"title": "Printer on fire", "priority": "high"}'


class Ticket(pydantic.BaseModel):
    title: str
    priority: Literal["low", "medium", "high"]


def _script_two_invalid_then(fake: FakeProvider, last: str) -> None:
    fake.reply("Sure! Here is your ticket.", input_tokens=100, output_tokens=7)  # not JSON
    fake.reply('{"title": "Printer on fire"}', input_tokens=150, output_tokens=9)  # no priority
    fake.reply(last, input_tokens=200, output_tokens=12)


@pytest.fixture
def client(fake: FakeProvider) -> Iterator[instructor.Instructor]:
    with openai.OpenAI(base_url=fake.url + "/v1", api_key="test") as raw:
        yield instructor.from_openai(raw, mode=instructor.Mode.JSON)


def _assert_three_requests_of_one_attempt(rows: list[dict[str, object]], task: str) -> None:
    assert len(rows) == 3
    for row, (inp, out) in zip(rows, [(100, 7), (150, 9), (200, 12)], strict=True):
        assert (row["task"], row["attempt"]) == (task, 1), row
        assert_priced_row(row, "openai", MODEL, input_tokens=inp, output_tokens=out)
        assert_timing(row, streaming=False)
    assert len({r["call_id"] for r in rows}) == 1 and rows[0]["call_id"] is not None
    assert [r["final"] for r in rows] == [False, False, True]


def test_instructor_validation_retries_are_three_priced_rows_of_one_attempt_ending_ok(
        store_url: str, fake: FakeProvider, client: instructor.Instructor) -> None:
    _script_two_invalid_then(fake, VALID)

    @llmlens.observe(task="extract_ticket", prompt_version="ticket@1")
    def extract() -> Ticket:
        return client.chat.completions.create(model=MODEL, response_model=Ticket, max_retries=2,
                                              messages=MESSAGES)

    assert extract().model_dump() == {"title": "Printer on fire", "priority": "high"}
    assert len(fake.requests) == 3
    rows = stored_rows(store_url)
    _assert_three_requests_of_one_attempt(rows, "extract_ticket")
    # Each request was answered (HTTP 200) and billed; the re-asked ones are not final, so
    # their cost counts as wasted spend while the call counts once, as ok.
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert {r["prompt_version"] for r in rows} == {"ticket@1"}


def test_instructor_giving_up_makes_its_last_request_the_final_invalid_output_row(
        store_url: str, fake: FakeProvider, client: instructor.Instructor) -> None:
    _script_two_invalid_then(fake, '{"title": "Printer on fire", "priority": "urgent"}')

    @llmlens.observe(task="extract_ticket")
    def extract() -> Ticket:
        return client.chat.completions.create(model=MODEL, response_model=Ticket, max_retries=2,
                                              messages=MESSAGES)

    with pytest.raises(InstructorRetryException):
        extract()
    rows = stored_rows(store_url)
    _assert_three_requests_of_one_attempt(rows, "extract_ticket")
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid_output"]
    assert rows[-1]["failure_reason"] == "InstructorRetryException"


def test_async_instructor_validation_retries_are_priced_rows_of_the_observed_call(
        store_url: str, fake: FakeProvider) -> None:
    _script_two_invalid_then(fake, VALID)

    @llmlens.observe(task="extract_ticket_async")
    async def extract() -> Ticket:
        async with openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key="test") as raw:
            client = instructor.from_openai(raw, mode=instructor.Mode.JSON)
            return await client.chat.completions.create(model=MODEL, response_model=Ticket, max_retries=2,
                                                        messages=MESSAGES)

    assert asyncio.run(extract()).priority == "high"
    rows = stored_rows(store_url)
    _assert_three_requests_of_one_attempt(rows, "extract_ticket_async")
    assert rows[-1]["status"] == "ok"
