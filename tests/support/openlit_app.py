"""An application instrumented by OpenLIT, as its users run it: ``openlit.init()``, then the openai SDK.

Run as a process of its own (``python openlit_app.py CONFIG_JSON``): ``openlit.init``
installs the global tracer provider, its OTLP/HTTP exporter and every instrumentation it
finds, which a test process could not undo. The config names the fake provider, the
collector, the service name and OpenLIT's price list (a file: OpenLIT fetches one from
the internet otherwise). The app makes the source matrix's four requests (cached input,
a stream, a 429, a 500) inside an agent span, so the task comes from a later batch.
Every connection beyond loopback is refused; the process exits 3 if one was attempted.
"""

from __future__ import annotations

import json
import sys

import loopback_guard

MODEL = "gpt-4o-mini"


def main(config_path: str) -> int:
    config = json.loads(open(config_path, encoding="utf-8").read())
    loopback_guard.install()
    loopback_guard.activate()
    import openai
    import openlit
    from opentelemetry import trace

    # disable_batch: a simple span processor, so each span is exported as it ends and the
    # agent span reaches the collector after the requests it names.
    openlit.init(service_name=config["service"], otlp_endpoint=config["collector"], disable_batch=True,
                 disable_metrics=True, disable_events=True, pricing_json=config["pricing"],
                 capture_message_content=False)
    client = openai.OpenAI(base_url=config["provider"] + "/v1", api_key="test", max_retries=0)
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "refunds"}
    with trace.get_tracer("app").start_as_current_span("invoke_agent refunds", attributes=agent):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q1"}])
        stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q2"}],
                                                stream=True, stream_options={"include_usage": True})
        for _chunk in stream:
            pass
        for error in (openai.RateLimitError, openai.InternalServerError):
            try:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q3"}])
            except error:
                pass
            else:
                raise AssertionError(f"the provider's scripted failure did not raise {error.__name__}")
    client.close()
    trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
    refused = loopback_guard.take_refused()
    if refused:
        print(f"reached beyond loopback: {refused}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
