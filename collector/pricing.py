"""The one place that turns (provider, model, tokens) into money.

Prices come from ``genai-prices`` (offline, bundled data) with user overrides from a TOML
file named by ``LLMLENS_PRICES``. A model neither knows is *unpriced*: its cost is
``None``, never a silent 0.

Pricing sits on the ingest hot path, and ``genai_prices.calc_price`` costs ~50 µs a call.
So each (provider, model, day) is calibrated once through ``calc_price`` itself into
linear per-token rates (uncached input, cache read, cache write, output, plus any flat
per-request price), and rows are priced from those rates. Tiered prices (e.g. long-context
surcharges) are only linear below their first tier, so a request at or past it is priced
by ``calc_price`` directly. A test checks the two agree.

Override file::

    # USD per million tokens
    [models."ft:gpt-4o-mini:acme"]
    input = 0.30
    output = 1.20
    cache_read = 0.15     # optional, defaults to input
    cache_write = 0.30    # optional, defaults to input

    [models."anthropic/claude-sonnet-4-5"]   # provider/model to override one provider only
    input = 2.5
    output = 12
"""

from __future__ import annotations

import logging
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first needed: loading the price data takes a while
    from genai_prices.data_snapshot import DataSnapshot

logger = logging.getLogger("llmlens")

# gen_ai.provider.name (semantic conventions) -> genai-prices provider id.
_PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "anthropic": "anthropic",
    "aws.bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "google": "google",
    "vertex_ai": "google",
    "groq": "groq",
    "mistral_ai": "mistral",
    "mistral": "mistral",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "cerebras": "cerebras",
}

_PROBE = 1000


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token for each token kind, and a flat USD per request."""

    input: float
    cache_read: float
    cache_write: float
    output: float
    per_request: float = 0.0
    # Requests with this many input tokens or more go to calc_price (tiered pricing).
    linear_below: int | None = None
    source: str = "genai-prices"

    @classmethod
    def per_million(cls, input: float, output: float, cache_read: float | None = None,
                    cache_write: float | None = None) -> Rates:
        """An override's rates from USD per million tokens (cache prices default to input's)."""
        return cls(input=input / 1e6, output=output / 1e6,
                   cache_read=(input if cache_read is None else cache_read) / 1e6,
                   cache_write=(input if cache_write is None else cache_write) / 1e6, source="override")

    def cost(self, input_tokens: int, cache_read: int, cache_write: int, output_tokens: int) -> float:
        uncached = max(input_tokens - cache_read - cache_write, 0)
        return (self.per_request + uncached * self.input + cache_read * self.cache_read
                + cache_write * self.cache_write + output_tokens * self.output)


def provider_id(provider: str | None) -> str | None:
    """The genai-prices id of a ``gen_ai.provider.name`` value (None when unknown)."""
    if not provider:
        return None
    return _PROVIDER_IDS.get(provider.lower(), provider.lower())


def load_overrides(path: str | Path) -> dict[str, Rates]:
    """Read an override TOML file into rates keyed by ``model`` or ``provider/model``."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    models = data.get("models")
    if not isinstance(models, dict):
        raise ValueError(f"{path}: expected a [models.\"NAME\"] table")
    out: dict[str, Rates] = {}
    for name, spec in models.items():
        if not isinstance(spec, dict) or "input" not in spec or "output" not in spec:
            raise ValueError(f"{path}: model {name!r} needs numeric 'input' and 'output' (USD per million tokens)")
        try:
            per_m = {k: float(spec[k]) for k in ("input", "output", "cache_read", "cache_write") if k in spec}
        except (TypeError, ValueError):
            raise ValueError(f"{path}: model {name!r} has a non-numeric price") from None
        if any(v < 0 for v in per_m.values()):
            raise ValueError(f"{path}: model {name!r} has a negative price")
        out[name.lower()] = Rates.per_million(per_m["input"], per_m["output"], per_m.get("cache_read"),
                                              per_m.get("cache_write"))
    return out


class Pricer:
    """Prices rows. Thread-safe; calibrated rates are cached per provider, model and day.

    >>> Pricer().cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=200)  # doctest: +SKIP
    0.00027
    """

    def __init__(self, overrides: dict[str, Rates] | None = None) -> None:
        self.overrides = overrides or {}
        # (provider, model, UTC day) as asked -> rates: rows repeat a few models, so each
        # is looked up (lower-cased, overridden or calibrated) once a day, not once a row.
        self._cache: dict[tuple[str | None, str, int], Rates | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, path: str | None = None) -> Pricer:
        """A pricer with the overrides named by ``path`` or ``LLMLENS_PRICES`` (if any)."""
        path = path or os.environ.get("LLMLENS_PRICES") or None
        return cls(load_overrides(path) if path else None)

    def rates(self, provider: str | None, model: str, when: datetime | None = None) -> Rates | None:
        """Per-token rates for a model, or None when no table knows it."""
        # Prices change by date: rates are cached per UTC day.
        key = (provider, model, (when or datetime.now(UTC)).toordinal())
        try:
            return self._cache[key]
        except KeyError:
            pass
        rates = self._override(provider, model)
        if rates is None:
            rates = _calibrate(provider_id(provider), model, when)
        with self._lock:
            if len(self._cache) > 10_000:  # bounded: model names come from senders
                self._cache.clear()
            self._cache[key] = rates
        return rates

    def _override(self, provider: str | None, model: str) -> Rates | None:
        model_key = model.lower()
        pid = provider_id(provider)
        override = self.overrides.get(f"{pid}/{model_key}") or self.overrides.get(model_key)
        if override is None and provider:
            override = self.overrides.get(f"{provider.lower()}/{model_key}")
        return override

    def cost(
        self,
        provider: str | None,
        model: str | None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        when: datetime | None = None,
    ) -> float | None:
        """USD for one request, or None when the model is unknown or there is no usage."""
        if not model or (input_tokens is None and output_tokens is None):
            return None
        rates = self.rates(provider, model, when)
        if rates is None:
            return None
        return _priced(rates, provider, model, input_tokens or 0, cache_read_tokens or 0,
                       cache_write_tokens or 0, output_tokens or 0, when)


def _priced(rates: Rates, provider: str | None, model: str, inp: int, cr: int, cw: int, out: int,
            when: datetime | None) -> float:
    if rates.linear_below is not None and inp >= rates.linear_below:
        exact = _calc_exact(provider_id(provider), model, inp, cr, cw, out, when)
        if exact is not None:
            return exact
    return rates.cost(inp, cr, cw, out)


def row_cost(pricer: Pricer, row: Mapping[str, Any]) -> float | None:
    """Cost of one ``llm_spans`` row: priced by its response model, else its requested one."""
    usage = row["input_tokens"] is not None or row["output_tokens"] is not None
    for model in (row["response_model"], row["request_model"]):
        if not model:
            continue
        rates = pricer.rates(row["provider"], model, row["start_time"])
        if rates is None:
            continue
        if not usage:
            # A failed request reports no usage and is not billed; a successful one
            # without usage has an unknown cost.
            return 0.0 if row["status"] != "ok" else None
        return _priced(rates, row["provider"], model, row["input_tokens"] or 0, row["cache_read_tokens"] or 0,
                       row["cache_write_tokens"] or 0, row["output_tokens"] or 0, row["start_time"])
    return None


def load_price_data() -> None:
    """Load genai-prices' bundled price data now, not at the first priced row.

    Importing the package and reading its snapshot takes a fraction of a second to over a
    second. The collector does it before it serves (and before it forks its workers, which
    then share it), so its first batch is not held up by it.
    """
    _snapshot()


def _snapshot() -> DataSnapshot:
    from genai_prices import data_snapshot

    return data_snapshot.get_snapshot()


def _lookup(pid: str | None, model: str) -> tuple[Any, Any] | None:
    snapshot = _snapshot()
    attempts = [pid, None] if pid else [None]
    for candidate in attempts:
        try:
            return snapshot.find_provider_model(model, None, candidate, None)
        except LookupError:
            continue
    return None


def _calc_exact(pid: str | None, model: str, inp: int, cr: int, cw: int, out: int,
                when: datetime | None) -> float | None:
    found = _lookup(pid, model)
    if found is None:
        return None
    from genai_prices import Usage, calc_price

    usage = Usage(input_tokens=inp, cache_read_tokens=cr, cache_write_tokens=cw, output_tokens=out)
    provider, _model = found
    result = calc_price(usage, model, provider_id=provider.id, genai_request_timestamp=when)
    return float(result.total_price)


def _calibrate(pid: str | None, model: str, when: datetime | None) -> Rates | None:
    found = _lookup(pid, model)
    if found is None:
        return None
    from genai_prices import Usage

    provider, model_info = found
    when = when or datetime.now(UTC)

    def price(**usage: int) -> Decimal:
        return model_info.calc_price(Usage(**usage), provider, genai_request_timestamp=when).total_price  # type: ignore[no-any-return]

    try:
        base = price()
        rates = Rates(
            input=float((price(input_tokens=_PROBE) - base) / _PROBE),
            cache_read=float((price(input_tokens=_PROBE, cache_read_tokens=_PROBE) - base) / _PROBE),
            cache_write=float((price(input_tokens=_PROBE, cache_write_tokens=_PROBE) - base) / _PROBE),
            output=float((price(output_tokens=_PROBE) - base) / _PROBE),
            per_request=float(base),
            linear_below=_first_tier(model_info.get_prices(when)),
        )
    except Exception:  # a price shape we cannot calibrate: price every row exactly instead
        logger.debug("cannot calibrate prices of %s/%s", pid, model, exc_info=True)
        return Rates(0, 0, 0, 0, linear_below=0)
    return rates


def _first_tier(model_price: Any) -> int | None:
    starts: list[int] = []
    for value in vars(model_price).values():
        tiers = getattr(value, "tiers", None)
        if tiers:
            starts.extend(int(t.start) for t in tiers)
    return min(starts) if starts else None
