"""Which provider a host serves: the map from a request's host and path to ``gen_ai.provider.name``.

Used by the HTTP-layer capture (:mod:`llmlens._wire`) to decide whether a request goes
to a model API at all, and whose. Provider names are the GenAI conventions'
``gen_ai.provider.name`` values where one exists (``openai``, ``azure.ai.openai``,
``anthropic``, ``gcp.gemini``, ``gcp.vertex_ai``, ``aws.bedrock``, ``mistral_ai``,
``x_ai``, ``groq``, ``deepseek`` ...), else the provider's id in genai-prices
(``together``, ``fireworks``, ``openrouter`` ...), so the collector prices the rows.

Self-hosted OpenAI-compatible servers (vLLM, Ollama, LiteLLM proxy, a gateway) are
unknown hosts; ``extra`` names them: ``{"llm.internal:8000": "vllm", "*.gw.acme.com":
"openai"}``. ``extra`` wins over the built-ins, and loopback hosts are model APIs only
through it (a test server on 127.0.0.1 is not a provider).

Interface (relied on by the capture hooks; extend, do not rename):
``provider_for(host, path, extra=None) -> str | None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["provider_for", "split_host"]

# Exact host names.
_EXACT: Final[dict[str, str]] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gcp.gemini",
    "aiplatform.googleapis.com": "gcp.vertex_ai",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral_ai",
    "codestral.mistral.ai": "mistral_ai",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "x_ai",
    "api.cohere.com": "cohere",
    "api.cohere.ai": "cohere",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
    "api.moonshot.ai": "moonshotai",
    "api.moonshot.cn": "moonshotai",
}

# Host suffixes, longest first is not needed: none of them nests in another.
_SUFFIXES: Final[tuple[tuple[str, str], ...]] = (
    (".openai.azure.com", "azure.ai.openai"),
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    ("-aiplatform.googleapis.com", "gcp.vertex_ai"),
)

_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def split_host(host: str, port: int | None = None) -> tuple[str, int | None]:
    """``"Api.OpenAI.com:443"`` -> ``("api.openai.com", 443)``; IPv6 ``"[::1]:8000"`` -> ``("::1", 8000)``."""
    text = host.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end > 0:
            rest = text[end + 1:]
            if rest.startswith(":") and rest[1:].isdigit() and port is None:
                port = int(rest[1:])
            return text[1:end], port
    if text.count(":") == 1:
        name, _, tail = text.partition(":")
        if tail.isdigit():
            return name, port if port is not None else int(tail)
        return name, port
    return text, port


def _from_extra(name: str, port: int | None, extra: Mapping[str, str]) -> str | None:
    if port is not None:
        found = extra.get(f"{name}:{port}")
        if found is not None:
            return found
    found = extra.get(name)
    if found is not None:
        return found
    for pattern, provider in extra.items():
        if pattern.startswith("*."):
            suffix, _, pattern_port = pattern[1:].partition(":")
            if name.endswith(suffix) and (not pattern_port or pattern_port == str(port)):
                return provider
    return None


def provider_for(host: str, path: str = "", extra: Mapping[str, str] | None = None,
                 port: int | None = None) -> str | None:
    """The provider behind ``host`` (with or without ``:port``), or None when it is not a model API.

    >>> provider_for("api.groq.com", "/openai/v1/chat/completions")
    'groq'
    >>> provider_for("127.0.0.1:8000", "/v1/chat/completions", {"127.0.0.1:8000": "vllm"})
    'vllm'
    """
    name, port = split_host(host, port)
    if extra:
        found = _from_extra(name, port, extra)
        if found is not None:
            return found
    if name in _LOOPBACK or name.startswith("127."):
        return None
    found = _EXACT.get(name)
    if found is not None:
        return found
    for suffix, provider in _SUFFIXES:
        if name.endswith(suffix):
            return provider
    if name.endswith(".services.ai.azure.com"):
        # Azure AI Foundry serves Azure OpenAI deployments under /openai/ and other
        # vendors' models through the Azure AI model inference API elsewhere.
        return "azure.ai.openai" if path.startswith("/openai/") else "azure.ai.inference"
    if name.startswith("bedrock-runtime") and name.endswith(".amazonaws.com"):
        return "aws.bedrock"
    return None
