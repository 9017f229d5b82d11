"""Where each instrumentation puts each fact: the table normalize reads.

Every field lists attribute names in order of preference: llmlens and the current GenAI
semantic conventions first, then their older names, then OpenLLMetry (``llm.*``,
``traceloop.*``), OpenInference (``llm.token_count.*``), OpenLIT and Langfuse. The first
present wins. Adding a source means adding names here, not code to ``normalize``.
"""

from __future__ import annotations

from typing import Final

from llmlens import semconv as sc

FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "request_model": (
        sc.REQUEST_MODEL,
        "llm.request.model",  # OpenLLMetry (older)
        "llm.model_name",  # OpenInference
        "langfuse.observation.model.name",
        "gen_ai.request.model_name",
    ),
    "response_model": (sc.RESPONSE_MODEL, "llm.response.model"),
    "provider": (
        sc.PROVIDER_NAME,
        "gen_ai.system",  # older conventions, OpenLLMetry, OpenLIT
        "llm.provider",  # OpenInference
        "llm.system",  # OpenInference
        "langfuse.observation.model.provider",
    ),
    "operation": (sc.OPERATION_NAME, "llm.request.type", "gen_ai.operation"),
    "input_tokens": (
        sc.USAGE_INPUT_TOKENS,
        "gen_ai.usage.prompt_tokens",
        "llm.usage.prompt_tokens",
        "llm.token_count.prompt",
    ),
    "output_tokens": (
        sc.USAGE_OUTPUT_TOKENS,
        "gen_ai.usage.completion_tokens",
        "llm.usage.completion_tokens",
        "llm.token_count.completion",
    ),
    "cache_read_tokens": (
        sc.USAGE_CACHE_READ_INPUT_TOKENS,
        "gen_ai.usage.cache_read_input_tokens",  # OpenLLMetry
        "gen_ai.usage.cached_tokens",
        "llm.usage.cache_read_input_tokens",
        "llm.token_count.prompt_details.cache_read",  # OpenInference
    ),
    "cache_write_tokens": (
        sc.USAGE_CACHE_WRITE_INPUT_TOKENS,
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",  # OpenLLMetry
        "llm.usage.cache_creation_input_tokens",
        "llm.token_count.prompt_details.cache_write",  # OpenInference
    ),
    "reasoning_tokens": (
        sc.USAGE_REASONING_OUTPUT_TOKENS,
        "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.reasoning.tokens",
        "llm.usage.reasoning_tokens",
        "llm.token_count.completion_details.reasoning",
    ),
    "total_tokens": ("llm.usage.total_tokens", "gen_ai.usage.total_tokens", "llm.token_count.total"),
    "task": (
        sc.TASK,
        "traceloop.workflow.name",  # OpenLLMetry
        "langfuse.trace.name",
        "gen_ai.agent.name",
        "gen_ai.application_name",  # OpenLIT
    ),
    "prompt_name": (sc.PROMPT_NAME, "traceloop.prompt.key", "langfuse.observation.prompt.name"),
    "prompt_version": (
        sc.PROMPT_VERSION,
        "traceloop.prompt.version",
        "llm.prompt_template.version",  # OpenInference
        "langfuse.observation.prompt.version",
    ),
    "ttft_s": (
        sc.RESPONSE_TIME_TO_FIRST_CHUNK,
        "gen_ai.client.operation.time_to_first_chunk",  # pydantic-ai / Logfire
        "gen_ai.server.time_to_first_token",  # OpenLIT
    ),
    "streaming": (
        sc.REQUEST_STREAM,
        "gen_ai.is_streaming",  # OpenLLMetry 0.4x+
        "llm.is_streaming",
        "gen_ai.request.is_stream",
    ),
    "finish_reasons": (
        sc.RESPONSE_FINISH_REASONS,
        "llm.response.finish_reason",
        "gen_ai.response.finish_reason",
        "llm.finish_reason",  # OpenInference
        "anthropic.message.stop_reason",  # anthropic SDK native spans
    ),
    "reported_cost": (
        "gen_ai.usage.cost",  # OpenLIT
        "gen_ai.cost.total_cost",  # LiteLLM
        "operation.cost",  # pydantic-ai / Logfire
        "llm.cost.total",
    ),
    "conversation_id": (
        sc.CONVERSATION_ID,
        "session.id",
        "langfuse.session.id",
        "traceloop.association.properties.session_id",
    ),
    "http_status": ("http.response.status_code", "http.status_code", "error.code"),  # error.code: LiteLLM
}

# Every name above is consumed into a column and not repeated in the attributes JSON.
CONSUMED: Final[frozenset[str]] = frozenset(name for names in FIELDS.values() for name in names) | {
    sc.STATUS, sc.FAILURE_REASON, sc.ATTEMPT, sc.MAX_ATTEMPTS, sc.IDEMPOTENCY_KEY, sc.PROMPT_HASH,
    sc.CALL_ID, sc.FINAL, sc.CALL_DURATION_MS, sc.ERROR_TYPE,
}

# Prompts and answers, as each source records them. Dropped at the door unless content
# capture is on, then redacted. Exact names, then prefixes of flattened lists.
CONTENT_KEYS: Final[frozenset[str]] = frozenset({
    sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS,
    "gen_ai.prompt", "gen_ai.completion",  # OpenLIT, old conventions
    "gen_ai.content.prompt", "gen_ai.content.completion",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.tool.definitions",
    "input.value", "output.value",  # OpenInference
    "llm.prompt_template.template", "llm.prompt_template.variables",
    "traceloop.entity.input", "traceloop.entity.output",
    "langfuse.observation.input", "langfuse.observation.output",
    "langfuse.trace.input", "langfuse.trace.output",
    "anthropic.tool_result.content",
    "llm.prompts", "llm.completions",
    # OpenLIT's older names for tool arguments, retrieval queries and revised prompts.
    "gen_ai.tool.args", "gen_ai.tool.input", "gen_ai.tool.output", "gen_ai.content.revised_prompt",
    "gen_ai.content.reasoning", "gen_ai.retrieval.query", "gen_ai.retrieval.query.text",
    "gen_ai.retrieval.documents",
    # Langfuse copies the provider's error message, which can quote the prompt.
    "langfuse.observation.status_message",
})
CONTENT_PREFIXES: Final[tuple[str, ...]] = (
    "gen_ai.prompt.",  # OpenLLMetry: gen_ai.prompt.0.content (gen_ai.prompt.name/version are consumed first)
    "gen_ai.completion.",
    "llm.input_messages.",  # OpenInference
    "llm.output_messages.",
    "llm.prompts.",
    "llm.completions.",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
    "embedding.embeddings.",
    "message.content",
    "tool_call.function.arguments",
)

# Sources that write several facts into one JSON-encoded attribute: attribute -> field ->
# keys (dotted for nested objects, "" for the whole value) in order of preference. Read
# only for fields that no plain attribute above gave.
JSON_FIELDS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    # Langfuse: its OpenAI integration stores OpenAI's usage object as is; other
    # integrations and manual generations use Langfuse's input/output/total keys.
    "langfuse.observation.usage_details": {
        "input_tokens": ("input", "prompt_tokens", "input_tokens"),
        "output_tokens": ("output", "completion_tokens", "output_tokens"),
        "total_tokens": ("total", "total_tokens"),
        "cache_read_tokens": ("cache_read_input_tokens", "input_cached_tokens", "input_cache_read",
                              "prompt_tokens_details.cached_tokens"),
        "cache_write_tokens": ("cache_creation_input_tokens", "input_cache_creation"),
        "reasoning_tokens": ("output_reasoning_tokens", "completion_tokens_details.reasoning_tokens"),
    },
    "langfuse.observation.cost_details": {"reported_cost": ("total",)},
    "langfuse.observation.metadata.finish_reason": {"finish_reasons": ("",)},
    # OpenInference: the request's parameters; a failed call's span has no llm.model_name.
    "llm.invocation_parameters": {"request_model": ("model",), "streaming": ("stream",)},
    # LiteLLM: the provider's usage as LiteLLM normalised it, where alone it keeps cache
    # reads and writes (written as a Python dict's repr, not JSON).
    "metadata.usage_object": {
        "input_tokens": ("prompt_tokens",),
        "output_tokens": ("completion_tokens",),
        "cache_read_tokens": ("cache_read_input_tokens", "prompt_tokens_details.cached_tokens"),
        "cache_write_tokens": ("cache_creation_input_tokens", "prompt_tokens_details.cache_creation_tokens",
                               "prompt_tokens_details.cache_write_tokens"),
        "reasoning_tokens": ("completion_tokens_details.reasoning_tokens",),
        "reported_cost": ("cost",),
    },
}

# Span events whose time is when the first chunk of a streamed answer arrived: sources that
# record no time-to-first-token attribute still tell it this way.
FIRST_CHUNK_EVENTS: Final[frozenset[str]] = frozenset({
    "gen_ai.content.completion.chunk",  # OpenLLMetry: one event per chunk, the first is the one
    "First Token Stream Event",  # OpenInference
})

# How SDKs and frameworks word an HTTP status in an error message, for sources that record
# only the message (a status description or an exception event): "Error code: 429 - ..."
# (openai, anthropic), "status_code: 500, model_name: ..." (pydantic-ai).
HTTP_CODE_IN_MESSAGE: Final = r"\b(?:Error code|status_code|status code|HTTP status|HTTP)[:=]? ?([1-5]\d\d)\b"

# Spans that name the work beneath them without a task attribute: their span name is the
# task of the requests below (OpenInference chains and agents, OpenLLMetry workflows,
# Langfuse's @observe spans, whose root's name is the trace's name).
NAMING_KINDS: Final[dict[str, frozenset[str]]] = {
    "openinference.span.kind": frozenset({"CHAIN", "AGENT"}),
    "traceloop.span.kind": frozenset({"workflow", "agent"}),
    "langfuse.observation.type": frozenset({"span", "agent", "chain"}),
}
# The entity name OpenLLMetry gives a workflow or agent (its span name adds a suffix).
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"

# Operations that are one request to a provider.
REQUEST_OPERATIONS: Final[frozenset[str]] = frozenset({
    "chat", "text_completion", "completion", "generate_content", "embeddings", "embedding",
    "responses", "create_message", "rerank", "image_generation", "audio",
})
# Spans of these kinds are workflow structure, not provider requests.
OPENINFERENCE_KIND: Final = "openinference.span.kind"
OPENINFERENCE_REQUEST_KINDS: Final[frozenset[str]] = frozenset({"LLM", "EMBEDDING", "RERANKER"})
TRACELOOP_KIND: Final = "traceloop.span.kind"
TRACELOOP_STRUCTURE_KINDS: Final[frozenset[str]] = frozenset({"workflow", "task", "agent", "tool"})
LANGFUSE_TYPE: Final = "langfuse.observation.type"
# Langfuse records when the first token arrived as a JSON-quoted ISO time, not a duration.
LANGFUSE_COMPLETION_START: Final = "langfuse.observation.completion_start_time"
LANGFUSE_REQUEST_TYPES: Final[frozenset[str]] = frozenset({"generation", "embedding"})

# Provider SDK scopes that trace their own requests; the provider follows from the scope.
SCOPE_PROVIDERS: Final[dict[str, str]] = {
    "com.anthropic.sdk.python": "anthropic",
    "opentelemetry.instrumentation.openai_v2": "openai",
    "opentelemetry.instrumentation.openai": "openai",
    "opentelemetry.instrumentation.openai.v1": "openai",  # OpenLLMetry 0.4x+
    "opentelemetry.instrumentation.anthropic": "anthropic",
    "openinference.instrumentation.openai": "openai",
    "openinference.instrumentation.anthropic": "anthropic",
}

# gen_ai.system / llm.provider spellings -> gen_ai.provider.name values.
PROVIDER_ALIASES: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "vertexai": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "groq": "groq",
    "cohere": "cohere",
    "deepseek": "deepseek",
}

# Model-name prefixes that name their provider, for spans that do not say.
MODEL_PREFIX_PROVIDERS: Final[tuple[tuple[str, str], ...]] = (
    ("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"), ("chatgpt", "openai"),
    ("text-embedding", "openai"), ("claude", "anthropic"), ("gemini", "gcp.gemini"),
    ("mistral", "mistral_ai"), ("grok", "x_ai"), ("deepseek", "deepseek"), ("command", "cohere"),
)
