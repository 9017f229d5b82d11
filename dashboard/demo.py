"""``llmlens demo``: a realistic LLM workload written through the real decorator.

Five tasks of a support product call six models (OpenAI, Anthropic and Google shapes, one
self-hosted, priced as its owner would: a price override), some streamed, with prompt
caching, rate limits retried under a :class:`llmlens.RetryPolicy`, occasional timeouts and
provider errors, and one bad prompt rollout: ``ticket_prompt@4`` breaks the ticket JSON for
a while, is rolled back to ``@3`` and later replaced by ``@5``. The provider is
:mod:`llmlens.dashboard._fake_provider` (in-process dicts and SDK-named exceptions, no
network).

**How days of history come from a run of seconds.** Every row is written by
``@llmlens.observe`` through the configured exporter, as in any application. The run is
just faster than the history it depicts, in two honest, reversible steps:

1. *A compressed clock.* A request that should take ``t`` ms sleeps ``t / TIME_SCALE`` ms,
   backoff likewise, so the decorator measures real durations on a clock ``TIME_SCALE``
   times faster than the simulated one.
2. *A schedule.* Each call has a planned start in the last ``days`` (busier in working
   hours) and runs inside its own trace, as a request handler's span would give it. After
   ``llmlens.flush()`` each batch of calls' rows (found by trace id) gets one ``UPDATE``
   (an executemany by primary key) that moves every row of a call to its planned start,
   keeping the offsets between attempts (scaled), and multiplies its durations by
   ``TIME_SCALE``. Tokens, costs, statuses, retries and attributes stay exactly what the
   span path wrote.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

import llmlens
from llmlens.collector.exporter import StoreSpanExporter
from llmlens.collector.pricing import Pricer, Rates
from llmlens.collector.store import Store, alert_rule_id, as_utc, open_store, resolve_url
from llmlens.dashboard import _fake_provider as fake
from llmlens.dashboard._fake_provider import FakeProvider, Usage

__all__ = ["TIME_SCALE", "DemoSummary", "Ticket", "run_demo"]

logger = logging.getLogger("llmlens")

TIME_SCALE: Final = 50.0
SERVICE_NAME: Final = "llmlens-demo"
_FIRST_BATCH: Final = 20
_BATCH: Final = 100  # calls per flush-and-shift batch: fewer spans than one export batch (512)
_WORKERS: Final = 32


class Ticket(BaseModel):
    """What ``extract_ticket`` must return; ``ticket_prompt@4`` breaks ``priority``."""

    category: Literal["billing", "bug", "account", "feature_request", "other"]
    priority: Literal["low", "normal", "high", "urgent"]
    summary: str


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`run_demo` wrote."""

    db_url: str
    calls: int
    rows: int
    failed_calls: int
    start: datetime
    end: datetime
    seconds: float
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    alerts_fired: int = 0

    def __str__(self) -> str:
        return (f"wrote {self.calls:,} calls ({self.rows:,} provider requests, {self.failed_calls:,} failed) "
                f"from {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC "
                f"into {self.db_url} in {self.seconds:.1f} s; {self.alerts_fired} alerts fired")


# --- the plan: every random choice, made up front so threads cannot reorder them ------------

Outcome = str | Callable[[], Exception]  # "ok", "invalid", or a factory of the error to raise


@dataclass
class _Call:
    index: int
    at: datetime
    task: str
    model: str
    prompt_version: str
    usage: Usage
    seed: int
    outcomes: list[Outcome] = field(default_factory=list)
    trace_id: str | None = None  # set when the call runs

    def next_outcome(self) -> Outcome:
        # One per attempt; the decorator decides whether another attempt comes.
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]


@dataclass(frozen=True)
class _Timeline:
    """Incidents, as fractions of the history: a rate-limit spike and the bad rollout."""

    start: datetime
    end: datetime

    def at(self, fraction: float) -> datetime:
        return self.start + (self.end - self.start) * fraction

    def between(self, when: datetime, a: float, b: float) -> bool:
        return self.at(a) <= when < self.at(b)

    @property
    def rollout(self) -> tuple[datetime, datetime]:
        """When ``ticket_prompt@4`` was live: deployed at 10:00 UTC, rolled back 3 hours later."""
        middle = self.at(0.55)
        deploy = middle.replace(hour=10, minute=0, second=0, microsecond=0)
        if deploy < middle - timedelta(hours=12):
            deploy += timedelta(days=1)
        if not self.start <= deploy <= self.end - timedelta(hours=4):
            deploy = middle  # a history too short for working hours
        return deploy, deploy + min(timedelta(hours=3), (self.end - self.start) * 0.08)

    def ticket_prompt(self, when: datetime) -> str:
        deployed, rolled_back = self.rollout
        if deployed <= when < rolled_back:
            return "ticket_prompt@4"  # breaks the JSON: priorities come back as P1..P3
        fixed = max(self.at(0.78), rolled_back + timedelta(hours=1))
        return "ticket_prompt@5" if when >= fixed else "ticket_prompt@3"


_TASKS: Final = (("extract_ticket", 0.30), ("classify_intent", 0.25), ("draft_reply", 0.15),
                 ("summarize_thread", 0.15), ("rag_answer", 0.15))
_CATEGORIES: Final = ("billing", "bug", "account", "feature_request", "other")
_PRIORITIES: Final = ("low", "normal", "normal", "high", "urgent")


def _schedule(rng: random.Random, calls: int, start: datetime, end: datetime) -> list[datetime]:
    # Traffic follows the working day (UTC): rejection-sample a smooth daily curve.
    span = (end - start).total_seconds()
    times: list[datetime] = []
    while len(times) < calls:
        when = start + timedelta(seconds=rng.random() * span)
        hour = when.hour + when.minute / 60
        weight = 0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.25
        if rng.random() < weight:
            times.append(when)
    return sorted(times)


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in weighted], [w for _, w in weighted])[0]


def _errors(rng: random.Random, model: str, when: datetime, timeline: _Timeline) -> Outcome:
    """An attempt's transport outcome: "ok" or a provider error."""
    spike = timeline.between(when, 0.30, 0.36)
    rate_limit = {"gpt-4o": 0.45 if spike else 0.015, "gpt-4o-mini": 0.08 if spike else 0.004}.get(model, 0.003)
    overloaded = 0.02 if model.startswith("claude") else 0.006
    roll = rng.random()
    if roll < rate_limit:
        return lambda: fake.RateLimitError()
    if roll < rate_limit + overloaded:
        if model.startswith("claude"):
            return lambda: fake.OverloadedError("Overloaded")
        return lambda: fake.InternalServerError("The server had an error while processing your request.")
    if roll < rate_limit + overloaded + 0.004:
        return lambda: fake.APITimeoutError()
    return "ok"


def _plan(rng: random.Random, calls: int, timeline: _Timeline) -> list[_Call]:
    planned = []
    for index, when in enumerate(_schedule(rng, calls, timeline.start, timeline.end)):
        task = _pick(rng, _TASKS)
        prompt = {"extract_ticket": timeline.ticket_prompt(when), "classify_intent": "intent@7",
                  "draft_reply": "reply@12", "summarize_thread": "summary@2", "rag_answer": "rag@9"}[task]
        if task == "extract_ticket":
            model = _pick(rng, (("gpt-4o-mini", 0.85), ("claude-3-5-haiku-latest", 0.15)))
            usage = Usage(rng.randint(700, 1600), rng.randint(60, 160), cache_read=rng.choice((0, 0, 512)))
        elif task == "classify_intent":
            model = _pick(rng, (("gemini-2.0-flash", 0.7), ("acme-support-llama-8b", 0.3)))
            usage = Usage(rng.randint(250, 520), rng.randint(2, 8))
        elif task == "draft_reply":
            model = "gpt-4o"
            usage = Usage(rng.randint(1500, 4200), rng.randint(150, 420), cache_read=rng.choice((0, 1024, 1024)))
        elif task == "summarize_thread":
            model = "claude-sonnet-4-5"
            cached = rng.choice((0, 2048, 2048, 2048))
            usage = Usage(rng.randint(3000, 12000) + cached, rng.randint(180, 450), cache_read=cached,
                          cache_write=2048 if cached == 0 else 0)
        else:
            model = "gpt-4o-mini"
            usage = Usage(rng.randint(4000, 9000), rng.randint(200, 500), cache_read=rng.choice((0, 2048, 3072)))
        call = _Call(index, when, task, model, prompt, usage, rng.getrandbits(32))
        for _ in range(3):  # the most attempts any demo policy allows
            outcome = _errors(rng, model, when, timeline)
            if outcome == "ok" and task == "extract_ticket":
                bad = 0.75 if prompt == "ticket_prompt@4" else 0.01
                outcome = "invalid" if rng.random() < bad else "ok"
            call.outcomes.append(outcome)
        planned.append(call)
    return planned


# --- the application: decorated functions, as a user would write them ------------------------

def _ticket_json(rng: random.Random, broken: bool) -> str:
    ticket = {"category": rng.choice(_CATEGORIES), "priority": rng.choice(_PRIORITIES),
              "summary": "Customer cannot download last month's invoice from the billing page."}
    if broken:
        # What @4's new few-shot examples taught the model: priorities as P1..P4.
        ticket["priority"] = rng.choice(("P1", "P2", "P3"))
    return json.dumps(ticket)


_TEXT: Final = {
    "classify_intent": "billing_question",
    "draft_reply": "Hi Sam, thanks for reaching out. I've re-sent the invoice to your billing address and "
                   "refunded the duplicate charge; it should appear within 3-5 business days.",
    "summarize_thread": "The customer reports a duplicate charge after upgrading. Support confirmed the "
                        "double capture, issued a refund, and promised a follow-up once it settles.",
    "rag_answer": "You can export invoices from Settings → Billing → History. Select the months you need "
                  "and choose CSV or PDF; exports include tax IDs when they are set on the account.",
}


class _App:
    """The demo application's model calls, decorated once per prompt version."""

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        # The application's own request span (not an LLM request, so not a row): it gives
        # each call a trace id the demo finds its rows by. Like any app, it brings its own
        # provider (llmlens never installs a global one).
        self.tracer = TracerProvider().get_tracer("llmlens.demo")
        # Backoff on the compressed clock: 0.5 s doubling up to 10 s, in simulated time.
        base, cap = 0.5 / TIME_SCALE, 10 / TIME_SCALE
        transient = llmlens.RetryPolicy(max_retries=2, base_delay=base, max_delay=cap)
        with_invalid = llmlens.RetryPolicy(max_retries=2, base_delay=base, max_delay=cap,
                                           retry_on=transient.retry_on | {"invalid_output"})
        self.extract = {
            version: llmlens.observe(task="extract_ticket", prompt_version=version, output=Ticket,
                                     retry=with_invalid)(self._complete)
            for version in ("ticket_prompt@3", "ticket_prompt@4", "ticket_prompt@5")
        }
        self.completions = {
            task: llmlens.observe(task=task, prompt_version=version, retry=transient)(self._complete)
            for task, version in (("classify_intent", "intent@7"), ("draft_reply", "reply@12"))
        }
        self.streams = {
            task: llmlens.observe(task=task, prompt_version=version)(self._stream)
            for task, version in (("summarize_thread", "summary@2"), ("rag_answer", "rag@9"))
        }

    def _complete(self, call: _Call, *, model: str) -> dict[str, Any]:
        rng = random.Random(call.seed + len(call.outcomes))
        outcome = call.next_outcome()
        if callable(outcome):
            self.provider.complete(model, "", call.usage, rng, failure=outcome())
        text = _ticket_json(rng, outcome == "invalid") if call.task == "extract_ticket" else _TEXT[call.task]
        return self.provider.complete(model, text, call.usage, rng)

    def _stream(self, call: _Call, *, model: str) -> Iterator[dict[str, Any]]:
        rng = random.Random(call.seed)
        outcome = call.next_outcome()
        failure = outcome() if callable(outcome) else None
        yield from self.provider.stream(model, _TEXT[call.task], call.usage, rng, failure=failure)

    def run(self, call: _Call) -> bool:
        """Make one call as the application would, in a trace of its own; True when it succeeded."""
        with self.tracer.start_as_current_span("handle_support_request") as span:
            call.trace_id = format(span.get_span_context().trace_id, "032x")
            return self._dispatch(call)

    def _dispatch(self, call: _Call) -> bool:
        try:
            if call.task == "extract_ticket":
                self.extract[call.prompt_version](call, model=call.model)
            elif call.task in self.completions:
                self.completions[call.task](call, model=call.model)
            else:
                for _ in self.streams[call.task](call, model=call.model):
                    pass
            return True
        except Exception:
            return False


# --- moving a batch of rows to its planned place in history ----------------------------------

def _shift(store: Store, batch: list[_Call], time_scale: float) -> tuple[int, set[str]]:
    """Move each call's rows to its planned start and rescale durations; one UPDATE per batch."""
    planned = {call.trace_id: call.at for call in batch if call.trace_id is not None}
    rows = store.timings_of_traces(planned)
    first: dict[str, datetime] = {}
    for row in rows:
        start = _utc(row["start_time"])
        first[row["trace_id"]] = min(first.get(row["trace_id"], start), start)

    def scaled(value: float | None) -> float | None:
        return None if value is None else value * time_scale

    changes = [
        {"id": row["id"],
         "start_time": planned[row["trace_id"]] + (_utc(row["start_time"]) - first[row["trace_id"]]) * time_scale,
         "duration_ms": row["duration_ms"] * time_scale,
         "time_to_first_token_ms": scaled(row["time_to_first_token_ms"]),
         "call_duration_ms": scaled(row["call_duration_ms"])}
        for row in rows
    ]
    return store.retime_rows(changes), set(first)


def _utc(value: datetime) -> datetime:
    utc = as_utc(value)
    assert utc is not None
    return utc


def run_demo(db_url: str | None = None, calls: int = 1500, seed: int = 7, days: float = 3.0, *,
             end: datetime | None = None) -> DemoSummary:
    """Write ``calls`` simulated LLM calls spread over the last ``days`` into the store.

    ``db_url`` defaults to ``LLMLENS_DB_URL`` or ``sqlite:///llmlens.db``; rows are added
    to what the store holds. The seed fixes every random choice (tasks, models, tokens,
    outcomes, schedule) for a given ``end`` of the history (default: a minute ago; traffic
    follows UTC working hours, so the same seed and ``end`` give the same workload). llmlens is configured for
    the store for the run and shut down afterwards; then the real alert evaluator is
    replayed over the bad rollout (webhooks off). The default size takes a few seconds.

    >>> print(run_demo("sqlite:///demo.db", calls=300))  # doctest: +SKIP
    wrote 300 calls (318 provider requests, 9 failed) from 2026-11-24 09:12 to ...
    """
    if calls <= 0 or days <= 0:
        raise ValueError("calls and days must be positive")
    began = time.monotonic()
    url = resolve_url(db_url)
    store = open_store(url)  # fails here, in one line, if the store is unreachable or outdated
    rng = random.Random(seed)
    if end is None:
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    end = _utc(end)
    timeline = _Timeline(end - timedelta(days=days), end)
    planned = _plan(rng, calls, timeline)

    exporter = StoreSpanExporter(url, pricer=_pricer())
    llmlens.configure(db_url=url, service_name=SERVICE_NAME, exporter=exporter)
    app = _App(FakeProvider(time_scale=TIME_SCALE))
    rows = failed = 0
    try:
        with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="llmlens-demo") as pool:
            for batch in _batches(planned):
                failed += sum(not ok for ok in pool.map(app.run, batch))
                rows += _flush_and_shift(store, batch)
    finally:
        llmlens.shutdown()
    alerts = _replay_alerts(store, timeline)
    tasks = sorted({c.task for c in planned})
    models = sorted({c.model for c in planned})
    return DemoSummary(store.url, len(planned), rows, failed, timeline.start, timeline.end,
                       time.monotonic() - began, tuple(tasks), tuple(models), alerts)


# No public table prices a self-hosted fine-tune: its owner names what it costs them per
# token in a price override (LLMLENS_PRICES for the collector), as the demo does here.
_SELF_HOSTED_PRICES: Final = {"acme-support-llama-8b": Rates.per_million(input=0.10, output=0.30)}


def _pricer() -> Pricer:
    # The user's own overrides (LLMLENS_PRICES) still apply, and win.
    return Pricer({**_SELF_HOSTED_PRICES, **Pricer.from_env().overrides})


# A rule sized for the demo's traffic (the default rule wants 20 calls in 15 minutes).
_DEMO_RULE: Final[dict[str, Any]] = {
    "name": "ticket JSON breaks (demo)", "metric": "invalid_output_rate", "threshold": 0.2,
    "window_minutes": 60, "min_calls": 5, "task": "extract_ticket", "cooldown_minutes": 120,
}


def _replay_alerts(store: Store, timeline: _Timeline) -> int:
    """Evaluate the alert rules as the collector's timer would have during the bad rollout.

    The real evaluator runs at past instants (every 15 minutes around the rollout) with
    webhooks off, so the Alerts view shows what would have fired, when, and why.
    """
    from llmlens.collector.alerts import add_rule, check_alerts

    if alert_rule_id(store.engine, _DEMO_RULE["name"]) is None:
        add_rule(store, **_DEMO_RULE)
    deployed, rolled_back = timeline.rollout
    fired = 0
    when = deployed + timedelta(minutes=15)
    while when <= min(rolled_back + timedelta(hours=1), timeline.end):
        fired += len(check_alerts(store, now=when, send=False))
        when += timedelta(minutes=15)
    return fired


def _batches(planned: list[_Call]) -> Iterator[list[_Call]]:
    # A small first batch: its flush opens the store and loads prices on the exporter's
    # side while no call is running, so that one-off pause is not measured as latency
    # (on the compressed clock a 50 ms pause would read as seconds).
    yield planned[:_FIRST_BATCH]
    for offset in range(_FIRST_BATCH, len(planned), _BATCH):
        yield planned[offset:offset + _BATCH]


def _flush_and_shift(store: Store, batch: list[_Call]) -> int:
    # A call's rows reach the store after its spans end and the batch processor exports
    # them; flush, then shift what arrived. Rows arriving later would keep their real time,
    # so wait (bounded) until every call of the batch has at least one row.
    rows = 0
    pending = batch
    for _ in range(5):
        llmlens.flush(timeout=10.0)
        shifted, seen = _shift(store, pending, TIME_SCALE)
        rows += shifted
        pending = [call for call in pending if call.trace_id not in seen]
        if not pending:
            return rows
        time.sleep(0.1)
    logger.warning("llmlens demo: %d calls were not written to the store", len(pending))
    return rows


