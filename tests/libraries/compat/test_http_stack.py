"""The compat environment really is the other HTTP stack: openai 2.x on ``httpx``."""

from __future__ import annotations

import httpx
import openai
from langchain_openai import ChatOpenAI


def test_the_compat_environment_runs_openai_2_on_httpx_and_langchain_with_it() -> None:
    assert openai.__version__.startswith("2.")
    with openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="test") as client:
        assert isinstance(client._client, httpx.Client)
    chat = ChatOpenAI(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key="test")
    assert isinstance(chat.root_client._client, httpx.Client)
    assert isinstance(chat.root_async_client._client, httpx.AsyncClient)
