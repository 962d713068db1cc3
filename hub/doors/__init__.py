"""The hub's front doors: MCP, the OpenAI-compatible API, the REST tool call, the admin API and the OAuth callback."""

ADMIN_PREFIX = "/api/v1"
"""Where the admin API lives (its modules load with the first request there, see `hub.http`)."""
OAUTH_CALLBACK_PATH = "/oauth/callback"
"""Where upstream authorization servers send the browser back."""
