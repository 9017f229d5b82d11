"""Which provider each name of the loopback fake provider stands for.

The fake provider is one server on 127.0.0.1 speaking every provider's API, and llmlens
tells providers apart by host (a loopback address is no provider of its own). Tests
reach it as ``127.0.0.1`` for OpenAI-shaped APIs and as ``localhost`` for Anthropic's,
and name both in ``LLMLENS_HOSTS``, as a user names a self-hosted server.
"""

from __future__ import annotations

from typing import Any


def claude_url(fake: Any) -> str:
    """The fake provider's base URL under the name that stands for Anthropic."""
    return str(fake.url).replace("127.0.0.1", "localhost")


def hosts_variable(fake: Any) -> str:
    """``LLMLENS_HOSTS`` for the fake provider: host:port=provider, comma separated."""
    port = str(fake.url).rsplit(":", 1)[1]
    return f"127.0.0.1:{port}=openai,localhost:{port}=anthropic"
