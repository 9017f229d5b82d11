"""Pricing: genai-prices' own figures, calibrated fast path, overrides, unpriced models."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage, calc_price

from llmlens.collector.pricing import Pricer, load_overrides


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered above 200k input tokens
    ("anthropic", "claude-3-5-haiku-latest"),
    ("gcp.gemini", "gemini-2.0-flash"),
    ("aws.bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
])
def test_the_fast_path_agrees_with_genai_prices_on_random_usage(provider: str, model: str) -> None:
    pricer = Pricer()
    rng = random.Random(42)
    provider_id = {"gcp.gemini": "google", "aws.bedrock": "aws"}.get(provider, provider)
    for _ in range(60):
        inp = rng.randint(0, 400_000)
        cr = rng.randint(0, inp // 3)
        cw = rng.randint(0, inp // 3)
        out = rng.randint(0, 8_000)
        ours = pricer.cost(provider, model, input_tokens=inp, output_tokens=out,
                           cache_read_tokens=cr, cache_write_tokens=cw)
        theirs = calc_price(Usage(input_tokens=inp, cache_read_tokens=cr, cache_write_tokens=cw,
                                  output_tokens=out), model, provider_id=provider_id).total_price
        assert ours == pytest.approx(float(theirs), rel=1e-9, abs=1e-12), (inp, cr, cw, out)


def test_cached_input_is_priced_at_the_cache_rate_inside_input_tokens() -> None:
    pricer = Pricer()
    full = pricer.cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=0)
    half_cached = pricer.cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=0, cache_read_tokens=500)
    assert full is not None and half_cached is not None
    assert half_cached == pytest.approx(full * 0.75)


def test_an_unknown_model_has_no_price_rather_than_zero() -> None:
    assert Pricer().cost("openai", "no-such-model-xyz", input_tokens=10, output_tokens=10) is None
    assert Pricer().cost(None, None, input_tokens=10, output_tokens=10) is None


def test_overrides_from_toml_win_and_price_unknown_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models."acme-llm"]\ninput = 1.0\noutput = 2.0\ncache_read = 0.5\n'
                    '[models."openai/gpt-4o-mini"]\ninput = 10\noutput = 20\n')
    monkeypatch.setenv("LLMLENS_PRICES", str(path))
    pricer = Pricer.from_env()
    assert pricer.cost("acme", "acme-llm", input_tokens=1_000_000, output_tokens=1_000_000,
                       cache_read_tokens=500_000) == pytest.approx(0.5 + 0.25 + 2.0)
    assert pricer.cost("openai", "gpt-4o-mini", input_tokens=1_000_000, output_tokens=0) == pytest.approx(10.0)
    # The override is for one provider only.
    other = pricer.cost("azure.ai.openai", "gpt-4o-mini", input_tokens=1_000_000, output_tokens=0)
    assert other != pytest.approx(10.0)


@pytest.mark.parametrize("text", [
    'models = 3',
    '[models."x"]\ninput = 1.0\n',
    '[models."x"]\ninput = "cheap"\noutput = 1\n',
    '[models."x"]\ninput = -1\noutput = 1\n',
])
def test_a_bad_override_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"prices\.toml"):
        load_overrides(path)


def test_historic_requests_are_priced_at_their_own_date() -> None:
    pricer = Pricer()
    when = datetime(2025, 1, 15, tzinfo=UTC)
    ours = pricer.cost("openai", "gpt-4o", input_tokens=1000, output_tokens=100, when=when)
    theirs = calc_price(Usage(input_tokens=1000, output_tokens=100), "gpt-4o", provider_id="openai",
                        genai_request_timestamp=when).total_price
    assert ours == pytest.approx(float(theirs))
