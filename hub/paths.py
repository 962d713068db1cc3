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
