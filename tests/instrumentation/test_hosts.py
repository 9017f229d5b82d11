"""Host -> provider: every built-in host, the user's map for self-hosted servers, and pricing of the names."""

from __future__ import annotations

import pytest

from llmlens._hosts import provider_for, split_host
from llmlens.collector import _sources
from llmlens.collector.pricing import Pricer

BUILT_IN = [
    ("api.openai.com", "/v1/chat/completions", "openai"),
    ("my-resource.openai.azure.com", "/openai/deployments/gpt4o/chat/completions", "azure.ai.openai"),
    ("my-resource.cognitiveservices.azure.com", "/openai/deployments/d/chat/completions", "azure.ai.openai"),
    ("hub.services.ai.azure.com", "/openai/deployments/d/chat/completions", "azure.ai.openai"),
    ("hub.services.ai.azure.com", "/models/chat/completions", "azure.ai.inference"),
    ("api.anthropic.com", "/v1/messages", "anthropic"),
    ("generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:generateContent", "gcp.gemini"),
    ("us-central1-aiplatform.googleapis.com", "/v1/projects/p/locations/l/publishers/google/models/m:x",
     "gcp.vertex_ai"),
    ("aiplatform.googleapis.com", "/v1/projects/p/locations/global/publishers/google/models/m:x", "gcp.vertex_ai"),
    ("api.groq.com", "/openai/v1/chat/completions", "groq"),
    ("api.mistral.ai", "/v1/chat/completions", "mistral_ai"),
    ("api.together.xyz", "/v1/chat/completions", "together"),
    ("api.together.ai", "/v1/chat/completions", "together"),
    ("api.deepseek.com", "/chat/completions", "deepseek"),
    ("openrouter.ai", "/api/v1/chat/completions", "openrouter"),
    ("api.fireworks.ai", "/inference/v1/chat/completions", "fireworks"),
    ("api.x.ai", "/v1/chat/completions", "x_ai"),
    ("api.cohere.com", "/v2/chat", "cohere"),
    ("api.perplexity.ai", "/chat/completions", "perplexity"),
    ("api.cerebras.ai", "/v1/chat/completions", "cerebras"),
    ("bedrock-runtime.us-east-1.amazonaws.com", "/model/m/converse", "aws.bedrock"),
]


@pytest.mark.parametrize(("host", "path", "provider"), BUILT_IN)
def test_each_known_model_api_host_names_its_provider(host: str, path: str, provider: str) -> None:
    assert provider_for(host, path) == provider
    assert provider_for(host.upper() + ":443", path) == provider


@pytest.mark.parametrize("host", ["example.com", "api.openai.com.evil.net", "s3.amazonaws.com", "googleapis.com",
                                  "localhost:11434", "127.0.0.1:8000", "[::1]:8000", ""])
def test_other_hosts_and_loopback_are_not_model_apis(host: str) -> None:
    assert provider_for(host, "/v1/chat/completions") is None


def test_the_users_map_names_self_hosted_servers_and_wins_over_built_ins() -> None:
    extra = {"127.0.0.1:8000": "vllm", "localhost": "ollama", "*.gw.acme.com": "openai",
             "api.openai.com": "my-gateway", "*.internal:9000": "tgi"}
    assert provider_for("127.0.0.1:8000", "/v1/chat/completions", extra) == "vllm"
    assert provider_for("127.0.0.1:8001", "/v1/chat/completions", extra) is None
    assert provider_for("localhost:11434", "/v1/chat/completions", extra) == "ollama"
    assert provider_for("eu.gw.acme.com", "/v1/chat/completions", extra) == "openai"
    assert provider_for("api.openai.com", "/v1/chat/completions", extra) == "my-gateway"
    assert provider_for("llm.internal:9000", "/v1/chat/completions", extra) == "tgi"
    assert provider_for("llm.internal:9001", "/v1/chat/completions", extra) is None
    assert provider_for("127.0.0.1", "/x", None, port=8000) is None
    assert provider_for("127.0.0.1", "/x", extra, port=8000) == "vllm"


def test_hosts_split_with_ports_and_ipv6() -> None:
    assert split_host("API.OpenAI.com:443") == ("api.openai.com", 443)
    assert split_host("[::1]:8000") == ("::1", 8000)
    assert split_host("api.openai.com", 443) == ("api.openai.com", 443)
    assert split_host("host:notaport") == ("host", None)


def test_provider_names_are_the_ones_the_collector_keeps() -> None:
    # normalize maps gen_ai.provider.name through these aliases: our names must come out unchanged.
    for _, _, provider in BUILT_IN:
        assert _sources.PROVIDER_ALIASES.get(provider, provider) == provider


@pytest.mark.parametrize(("host", "model"), [
    ("api.openai.com", "gpt-4o-mini"), ("x.openai.azure.com", "gpt-4o-mini"), ("api.anthropic.com", "claude-haiku-4-5"),
    ("generativelanguage.googleapis.com", "gemini-2.5-flash"), ("us-aiplatform.googleapis.com", "gemini-2.5-flash"),
    ("api.groq.com", "llama-3.1-8b-instant"), ("api.mistral.ai", "mistral-small-latest"),
    ("api.deepseek.com", "deepseek-chat"), ("api.deepseek.com", "deepseek-reasoner"), ("api.x.ai", "grok-3"),
    ("api.together.xyz", "meta-llama/Llama-3.3-70B-Instruct-Turbo"), ("openrouter.ai", "openai/gpt-4o-mini"),
    ("api.fireworks.ai", "accounts/fireworks/models/llama-v3p1-8b-instruct"), ("api.perplexity.ai", "sonar"),
    ("api.cohere.com", "command-r-plus"), ("api.cerebras.ai", "llama3.1-8b")])
def test_rows_of_each_provider_are_priced_by_genai_prices(host: str, model: str) -> None:
    assert Pricer().rates(provider_for(host, "/v1/chat/completions"), model) is not None
