"""The never-break contract as a property: the caller sees what the unwrapped function produces.

Whatever the wrapped function returns or raises, whatever its arguments and results do when
llmlens reads them (a ``__str__`` that raises, a property that raises ``SystemExit``), and
whatever a buggy ``output=`` validator does, the caller gets the same result or the very
same exception object as without ``@observe``, the function runs as many times, and the
attempt's span still ends, so its row is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

import llmlens
from llmlens import _attempt
from llmlens import semconv as sc
from llmlens.collector.store import open_store

if TYPE_CHECKING:
    from conftest import Spans
    from fake_provider import FakeProvider


@pytest.fixture(autouse=True)
def _fresh_bursts() -> None:
    # Log messages are limited to one per burst; each test expects to see its own.
    for burst in (_attempt._burst, _attempt._validator_burst):
        burst.last = 0.0
        burst.suppressed = 0

RAISED = [ValueError, RuntimeError, ZeroDivisionError, AttributeError, KeyError, RecursionError, SystemExit,
          KeyboardInterrupt, GeneratorExit]
# Where llmlens may look at a result, an argument or an exception.
RESULT_SPOTS = ["usage", "model", "choices", "id", "object", "content", "type", "model_dump", "text", "output",
                "candidates", "usageMetadata", "modelVersion", "stop_reason", "_hidden_params", "__wrapped__",
                "stream", "response", "__str__", "__repr__", "__getattr__", "__iter__", "__len__", "__bool__",
                "__getitem__", "keys", "get"]
EXCEPTION_SPOTS = ["response", "status_code", "status", "http_status", "code", "headers", "request", "__str__",
                   "__repr__", "__getattr__", "body", "message"]
DUNDERS = {"__str__", "__repr__", "__iter__", "__len__", "__bool__", "__getitem__"}


def hostile(kind: type[BaseException], spots: frozenset[str], base: type = object, name: str = "Hostile") -> type:
    """A class whose every listed attribute or protocol method raises ``kind``."""

    def boom(self: object, *args: object) -> Any:
        raise kind("hostile")

    namespace: dict[str, Any] = {}
    for spot in spots:
        if spot in DUNDERS:
            namespace[spot] = boom
        elif spot == "__getattr__":
            namespace["__getattr__"] = lambda self, attr: boom(self)
        else:
            namespace[spot] = property(boom)
    return type(name, (base,), namespace)


# Hypothesis draws descriptions (plain data) and the test builds the hostile objects: the
# objects would break Hypothesis' own reporting, which reads their attributes.
raised = st.sampled_from(RAISED)
hostile_objects = st.tuples(st.just("object"), raised, st.frozensets(st.sampled_from(RESULT_SPOTS), max_size=8))
results = st.one_of(
    hostile_objects,
    st.tuples(st.just("response of hostile parts"), raised, st.frozensets(st.sampled_from(RESULT_SPOTS),
                                                                          max_size=8)),
    st.tuples(st.just("hostile usage"), raised, st.frozensets(st.sampled_from(RESULT_SPOTS), max_size=8)),
    st.tuples(st.just("value"), st.one_of(st.none(), st.integers(), st.text(max_size=10))),
)
exceptions = st.tuples(
    st.just("exception"), raised, st.frozensets(st.sampled_from(EXCEPTION_SPOTS), max_size=6),
    st.sampled_from(["HostileError", "RateLimitError", "APIConnectionError", "BadRequestError", "Timeout"]),
)
arguments = st.lists(st.one_of(hostile_objects, st.tuples(st.just("value"), st.one_of(st.text(max_size=10),
                                                                                      st.integers()))),
                     max_size=3)


def build(description: tuple[Any, ...]) -> Any:
    what = description[0]
    if what == "value":
        return description[1]
    if what == "exception":
        _, kind, spots, name = description
        return hostile(kind, spots, Exception, name)()
    _, kind, spots = description
    part = hostile(kind, spots)()
    if what == "response of hostile parts":
        return {"model": part, "usage": part, "choices": [part], "object": "chat.completion"}
    if what == "hostile usage":
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": part, "completion_tokens": 1}}
    return part


def _buggy(kind: type[Exception]) -> Any:
    def validate(result: Any) -> Any:
        raise kind("a bug in the validator")

    validate.__name__ = f"raises_{kind.__name__}"
    return validate


validators = st.sampled_from([None, _buggy(ZeroDivisionError), _buggy(AttributeError), _buggy(RuntimeError),
                              _buggy(NameError), lambda result: "validated"])
# Only invalid output is retried, and nothing here is invalid output: a retry would be a break.
POLICY = llmlens.RetryPolicy(max_retries=2, base_delay=0.0, retry_on=frozenset({"invalid_output"}))


def drive(coroutine: Any) -> Any:
    """Run a coroutine that awaits nothing real, without an event loop.

    An event loop would format tasks holding hostile exceptions (their repr raises) and
    could leave its SIGINT handler behind, breaking every later test of the process.
    """
    for _ in range(100):
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
    raise RuntimeError("the coroutine kept waiting")


def outcome_of(fn: Any, args: list[Any], is_async: bool) -> tuple[str, Any]:
    try:
        value = drive(fn(*args)) if is_async else fn(*args)
    except BaseException as exc:
        return "raise", exc
    return "return", value


def attempts_ended(spans: Spans) -> int:
    return sum(1 for s in spans.llmlens() if (s.attributes or {}).get(sc.SPAN_ROLE) == "attempt")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcome_spec=st.one_of(results, exceptions), arg_specs=arguments, capture=st.booleans(),
       hash_prompt=st.booleans(), validator=validators, retry=st.booleans(), is_async=st.booleans())
def test_the_caller_sees_exactly_what_the_unwrapped_function_produces(
        spans: Spans, outcome_spec: tuple[Any, ...], arg_specs: list[tuple[Any, ...]], capture: bool,
        hash_prompt: bool, validator: Any, retry: bool, is_async: bool) -> None:
    outcome = build(outcome_spec)
    args = [build(spec) for spec in arg_specs]
    runs: list[int] = []

    def plain(*a: Any) -> Any:
        runs.append(1)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def plain_async(*a: Any) -> Any:
        return plain(*a)

    fn = plain_async if is_async else plain
    expected = outcome_of(fn, args, is_async)
    assume(expected[1] is outcome)  # the baseline is the function's own outcome
    unwrapped_runs = len(runs)
    runs.clear()
    wrapped = llmlens.observe(task="property", capture_content=capture, hash_prompt=hash_prompt, output=validator,
                              retry=POLICY if retry else None)(fn)
    before = attempts_ended(spans)

    got = outcome_of(wrapped, args, is_async)

    assert got[0] == expected[0], (got, expected)
    assert got[1] is expected[1] or got[1] == expected[1], (got, expected)
    assert len(runs) == unwrapped_runs == 1
    assert attempts_ended(spans) == before + 1, "the attempt's span ended: its row is written"


# --- the cases the property grew from ------------------------------------------------------------
def test_a_validator_that_divides_by_zero_is_a_bug_not_invalid_output_and_causes_no_retry(
        spans: Spans, fake: FakeProvider, openai_client: openai.OpenAI, caplog: pytest.LogCaptureFixture) -> None:
    def validate(response: Any) -> Any:
        return 1 / 0

    policy = llmlens.RetryPolicy(max_retries=2, base_delay=0.0, retry_on=frozenset({"invalid_output"}))

    @llmlens.observe(task="t", output=validate, retry=policy)
    def call() -> Any:
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])

    with caplog.at_level(logging.WARNING, logger="llmlens"):
        response = call()
    assert response.choices[0].message.content is not None
    assert len(fake.requests) == 1, "one provider call, as without llmlens"
    (attempt,) = [s for s in spans.llmlens() if (s.attributes or {})[sc.SPAN_ROLE] == "attempt"]
    assert (attempt.attributes or {})[sc.STATUS] == "ok"
    assert "ZeroDivisionError, a bug in the validator" in caplog.text
    with pytest.raises(LookupError):
        llmlens.current_output()


def test_a_validator_rejecting_the_output_is_still_invalid_output_and_retried(spans: Spans) -> None:
    answers = iter(["no", "yes"])

    def must_be_yes(text: str) -> str:
        if text != "yes":
            raise ValueError("not yes")
        return text

    @llmlens.observe(output=must_be_yes, retry=llmlens.RetryPolicy(max_retries=1, base_delay=0.0,
                                                                   retry_on=frozenset({"invalid_output"})))
    def call() -> str:
        return next(answers)

    assert call() == "yes" and llmlens.current_output() == "yes"


def test_an_argument_whose_str_raises_still_ends_the_span_and_writes_a_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'llmlens.db'}"
    llmlens.configure(db_url=url, tracer_provider=TracerProvider(), capture_content=True)
    Unprintable = hostile(RuntimeError, frozenset({"__str__", "__repr__"}))

    @llmlens.observe(task="t")
    def call(document: Any) -> dict[str, Any]:
        return {"model": "gpt-4o-mini", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}

    assert call(Unprintable())["model"] == "gpt-4o-mini"
    assert llmlens.flush()
    (row,) = open_store(url).fetch_rows()
    assert (row["task"], row["status"], row["input_tokens"]) == ("t", "ok", 3)


def test_an_exception_whose_response_property_raises_is_recorded_and_still_retried(spans: Spans) -> None:
    RateLimitError = hostile(RuntimeError, frozenset({"response", "status_code", "headers"}), Exception,
                             "RateLimitError")
    error = RateLimitError("slow down")
    runs: list[int] = []

    @llmlens.observe(retry=llmlens.RetryPolicy(max_retries=1, base_delay=0.0))
    def call() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise error
        return "ok"

    assert call() == "ok" and len(runs) == 2
    statuses = sorted((s.attributes or {})[sc.STATUS] for s in spans.llmlens()
                      if (s.attributes or {})[sc.SPAN_ROLE] == "attempt")
    assert statuses == ["ok", "rate_limited"]


@pytest.mark.parametrize("kind", [SystemExit, KeyboardInterrupt])
def test_a_result_property_raising_systemexit_does_not_escape_llmlens(spans: Spans, kind: type[BaseException]) -> None:
    result = hostile(kind, frozenset({"usage", "model", "choices", "__getattr__"}))()

    @llmlens.observe(capture_content=True)
    def call() -> Any:
        return result

    assert call() is result
    assert (spans.one().attributes or {})[sc.STATUS] == "ok"


def test_the_validators_own_keyboard_interrupt_reaches_the_caller_and_the_span_ends(spans: Spans) -> None:
    interrupt = KeyboardInterrupt()

    def validate(result: Any) -> Any:
        raise interrupt

    @llmlens.observe(output=validate)
    def call() -> str:
        return "answer"

    with pytest.raises(KeyboardInterrupt) as caught:
        call()
    assert caught.value is interrupt
    assert (spans.one().attributes or {})[sc.STATUS] == "cancelled"
