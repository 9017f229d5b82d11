"""Every span attribute name llmlens writes or reads, in one place.

The OpenTelemetry GenAI semantic conventions are still experimental and their Python
constants live in ``_incubating`` modules that move between releases, so the strings
are written here instead of imported. Names the conventions lack live under ``llmlens.*``.
"""

from __future__ import annotations

from typing import Final

# --- GenAI semantic conventions (latest names) -------------------------------------------
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"  # seconds
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"  # includes cached input
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"  # includes reasoning
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
PROMPT_NAME: Final = "gen_ai.prompt.name"
PROMPT_VERSION: Final = "gen_ai.prompt.version"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_STATUS_CODE: Final = "http.response.status_code"
SERVICE_NAME: Final = "service.name"

# --- llmlens: what the conventions lack ----------------------------------------------------
TASK: Final = "llmlens.task"
STATUS: Final = "llmlens.status"
FAILURE_REASON: Final = "llmlens.failure_reason"
ATTEMPT: Final = "llmlens.attempt"
MAX_ATTEMPTS: Final = "llmlens.max_attempts"
RETRY_REASON: Final = "llmlens.retry_reason"
IDEMPOTENCY_KEY: Final = "llmlens.idempotency_key"
PROMPT_HASH: Final = "llmlens.prompt_hash"
# The role of an llmlens span: "call" is the logical call around retried attempts (not a
# row); "request" is one provider request seen at the HTTP layer (always a row);
# "attempt" is one invocation of the decorated function: a row only when no request was
# captured inside it (a client that never touches httpx), else it says how many were.
SPAN_ROLE: Final = "llmlens.span_role"
ROLE_CALL: Final = "call"
ROLE_ATTEMPT: Final = "attempt"
ROLE_REQUEST: Final = "request"
REQUESTS: Final = "llmlens.requests"  # on an attempt: provider requests captured inside it
RETRY_AFTER: Final = "llmlens.retry_after"  # seconds a refused request was told to wait
CALL_ID: Final = "llmlens.call_id"  # hex span id of the logical call
FINAL: Final = "llmlens.final"  # the attempt whose outcome the caller saw
CALL_DURATION_MS: Final = "llmlens.call_duration_ms"
# Set on a provider SDK's own span (anthropic native tracing, openai-v2 instrumentation)
# that runs inside an llmlens attempt: the attempt's row already describes that request,
# so this span is not a row. The value is the attempt's hex span id.
MERGED_INTO: Final = "llmlens.merged_into"
COST_USD: Final = "llmlens.cost_usd"
# The provider's own name for an error, from its error body or a mid-stream error event
# ("rate_limit_error", "model_not_found", "RESOURCE_EXHAUSTED"): never its message.
PROVIDER_ERROR: Final = "llmlens.provider_error"

# Instrumentation scope of llmlens' own spans.
SCOPE_NAME: Final = "llmlens"

STATUSES: Final = (
    "ok",
    "invalid_output",
    "timeout",
    "rate_limited",
    "provider_error",
    "client_error",
    "cancelled",
    "error",
)
