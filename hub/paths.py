"""The HTTP paths the hub serves, named once: the doors route them, the settings and the upstream OAuth client
build addresses with them."""

ADMIN_PREFIX = "/api/v1"
"""Where the admin API lives (its modules load with the first request there, see `hub.http`)."""
OAUTH_CALLBACK_PATH = "/oauth/callback"
"""Where upstream authorization servers send the browser back."""
OAUTH_START_PATH = "/oauth/start"
"""Where a key's user opens a per-user authorization link and confirms it (`GET`, then `POST`)."""
OPENAI_POST_PATHS = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/embeddings"})
"""The OpenAI-compatible door's `POST` paths (its modules load with the first request to it, see `hub.http`)."""
OPENAI_GET_PATHS = ("/v1/models", "/v1/models/{model:path}")
"""Its `GET` paths (the model list and one model)."""
OPENAI_STORED_RESPONSE_PATHS = {
    "/v1/responses/{response_id}": ("GET", "DELETE"),
    "/v1/responses/{response_id}/cancel": ("POST",),
    "/v1/responses/{response_id}/input_items": ("GET",),
}
"""Its paths for a stored response, with their methods (read, delete, cancel, list the input items)."""
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
ANTHROPIC_POST_PATHS = frozenset({MESSAGES_PATH, COUNT_TOKENS_PATH})
"""The Anthropic Messages door's `POST` paths (loaded, and routed, with the OpenAI door's)."""
LLM_POST_PATHS = OPENAI_POST_PATHS | ANTHROPIC_POST_PATHS
"""Every `POST` path of the two LLM doors: the HTTP app routes them straight to their handlers."""
